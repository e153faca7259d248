"""Ornstein-Uhlenbeck fit by AR(1) regression, behind a unit-root gate (STA).

An OU process ``dX = theta (mu - X) dt + sigma dW`` sampled every ``dt`` is exactly an AR(1)::

    X[t+1] = a + b X[t] + e,   b = exp(-theta dt),   a = mu (1 - b),   Var(e) = sigma^2 (1 - b^2) / (2 theta)

so an OLS of X[t+1] on X[t] gives ``theta = -ln(b) / dt``, ``mu = a / (1 - b)`` and the equilibrium
(stationary) standard deviation ``sigma_eq = sd(e) / sqrt(1 - b^2) = sigma / sqrt(2 theta)``. The
half-life of a deviation is ``ln 2 / theta``.

The gate: statsmodels' augmented Dickey-Fuller test must reject a unit root (p-value at or below the
threshold) *and* 0 < b < 1. A random walk has b ~ 1 and a large p-value, so its gate stays closed:
there is no equilibrium to revert to, whatever the fitted numbers say.

:class:`OUModel` keeps a rolling window and refits every ``refit_every`` observations; between fits
the score of the latest value is ``(x - mu) / sigma_eq``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt

from ..plain import Record, record, record_of
from ._stats import adf_pvalue

__all__ = ["OUFit", "OUModel", "OUModelState", "fit_ou"]

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class OUFit:
    a: float
    b: float
    theta: float  # per unit of dt; 0 when b is outside (0, 1)
    mu: float
    sigma_eq: float
    adf_pvalue: float
    n: int

    @property
    def stationary(self) -> bool:
        return 0.0 < self.b < 1.0 and self.sigma_eq > 0

    @property
    def half_life(self) -> float:
        return math.log(2) / self.theta if self.theta > 0 else math.inf

    def gate(self, pvalue_max: float) -> bool:
        return self.stationary and self.adf_pvalue <= pvalue_max

    def zscore(self, x: float) -> float:
        return (x - self.mu) / self.sigma_eq if self.stationary else 0.0


def fit_ou(series: Array, dt: float = 1.0, *, maxlag: int | None = None) -> OUFit:
    """AR(1) OLS fit of ``series`` mapped to OU parameters, with the ADF p-value of the series
    (``maxlag``: its lags, None = Schwert's rule)."""
    x = np.asarray(series, dtype=float)
    if len(x) < 20:
        raise ValueError(f"need at least 20 observations, got {len(x)}")
    design = np.column_stack([np.ones(len(x) - 1), x[:-1]])
    (a, b), *_ = np.linalg.lstsq(design, x[1:], rcond=None)
    a, b = float(a), float(b)
    resid = x[1:] - a - b * x[:-1]
    s = float(np.std(resid, ddof=2))
    if 0.0 < b < 1.0:
        theta, mu, sigma_eq = -math.log(b) / dt, a / (1.0 - b), s / math.sqrt(1.0 - b * b)
    else:
        theta, mu, sigma_eq = 0.0, float(np.mean(x)), 0.0
    pvalue = adf_pvalue(x, maxlag=maxlag) if np.ptp(x) > 0 else 1.0
    return OUFit(a=a, b=b, theta=theta, mu=mu, sigma_eq=sigma_eq, adf_pvalue=pvalue, n=len(x))


class OUModelState(msgspec.Struct, kw_only=True):
    """An :class:`OUModel`'s window, its fit and where the refits stand."""

    values: list[float] = []
    fit: Record | None = None
    since_fit: int = 0
    fits: int = 0


class OUModel:
    """A rolling window with an OU fit refreshed every ``refit_every`` observations."""

    def __init__(
        self, lookback: int, refit_every: int, dt: float = 1.0, *, maxlag: int | None = None
    ) -> None:
        if lookback < 20 or refit_every < 1:
            raise ValueError(f"lookback must be >= 20 and refit_every >= 1, got {lookback}, {refit_every}")
        self.values: deque[float] = deque(maxlen=lookback)
        self.refit_every = refit_every
        self.dt = dt
        self.maxlag = maxlag
        self.fit: OUFit | None = None
        self._since_fit = 0
        self.fits = 0

    def state(self) -> OUModelState:
        fit = None if self.fit is None else record(self.fit)
        return OUModelState(values=list(self.values), fit=fit, since_fit=self._since_fit, fits=self.fits)

    def restore(self, state: OUModelState) -> None:
        """Take ``state`` back into a new model (the window keeps this model's ``lookback``)."""
        self.values.extend(state.values)
        self.fit = None if state.fit is None else record_of(OUFit, state.fit)
        self._since_fit, self.fits = state.since_fit, state.fits

    def update(self, x: float) -> float | None:
        """Add one value; returns its score in equilibrium sigmas (None while warming up)."""
        self.values.append(x)
        self._since_fit += 1
        if len(self.values) == self.values.maxlen and (
            self.fit is None or self._since_fit >= self.refit_every
        ):
            self.fit = fit_ou(np.fromiter(self.values, float), self.dt, maxlag=self.maxlag)
            self._since_fit = 0
            self.fits += 1
        return None if self.fit is None else self.fit.zscore(x)
