"""Pairs trading arithmetic: Engle-Granger hedge ratio, its cointegration gate, the spread's z-score.

Step one of Engle-Granger is the OLS regression ``y = alpha + beta * x + u`` over a window; beta is the
hedge ratio (units of x per unit of y). Step two asks whether the residual u is stationary: the
p-value is statsmodels' ``coint`` (MacKinnon critical values for a *residual* unit-root test, which
are stricter than plain ADF's because beta was fitted). The gate is open when that p-value is at or
below a threshold; two independent random walks almost never pass it, a planted pair almost always.

The z-score of the latest observation is its residual against the window's fit, in residual standard
deviations (ddof 1). :class:`PairModel` keeps the window as rolling deques and refits every
``refit_every`` observations, so the cost per bar is a subtraction and a division, and a regression
plus a test only once per refit.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt

from ..plain import Record, record, record_of
from ._stats import engle_granger_pvalue

__all__ = ["HedgeFit", "PairModel", "PairModelState", "fit_pair"]

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class HedgeFit:
    alpha: float
    beta: float
    resid_std: float
    pvalue: float
    n: int

    def spread(self, y: float, x: float) -> float:
        return y - self.alpha - self.beta * x

    def zscore(self, y: float, x: float) -> float:
        return self.spread(y, x) / self.resid_std if self.resid_std > 0 else 0.0

    def gate(self, pvalue_max: float) -> bool:
        return self.pvalue <= pvalue_max and self.resid_std > 0


def fit_pair(y: Array, x: Array, *, maxlag: int | None = None) -> HedgeFit:
    """OLS of y on x with an intercept, and the Engle-Granger p-value of the pair (``maxlag``: lags
    of its residual ADF, None = Schwert's rule)."""
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    if len(y) != len(x) or len(y) < 10:
        raise ValueError(f"need two series of equal length >= 10, got {len(y)} and {len(x)}")
    design = np.column_stack([np.ones_like(x), x])
    (alpha, beta), *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - alpha - beta * x
    std = float(np.std(resid, ddof=1))
    pvalue = engle_granger_pvalue(y, x, maxlag=maxlag) if std > 0 else 1.0
    return HedgeFit(alpha=float(alpha), beta=float(beta), resid_std=std, pvalue=pvalue, n=len(y))


class PairModelState(msgspec.Struct, kw_only=True):
    """A :class:`PairModel`'s window, its fit and where the refits stand."""

    ys: list[float] = []
    xs: list[float] = []
    fit: Record | None = None
    since_fit: int = 0
    fits: int = 0


class PairModel:
    """A rolling window of (y, x) with a fit refreshed every ``refit_every`` observations."""

    def __init__(self, lookback: int, refit_every: int, *, maxlag: int | None = None) -> None:
        if lookback < 10 or refit_every < 1:
            raise ValueError(f"lookback must be >= 10 and refit_every >= 1, got {lookback}, {refit_every}")
        self.ys: deque[float] = deque(maxlen=lookback)
        self.xs: deque[float] = deque(maxlen=lookback)
        self.refit_every = refit_every
        self.maxlag = maxlag
        self.fit: HedgeFit | None = None
        self._since_fit = 0
        self.fits = 0

    def state(self) -> PairModelState:
        fit = None if self.fit is None else record(self.fit)
        return PairModelState(
            ys=list(self.ys), xs=list(self.xs), fit=fit, since_fit=self._since_fit, fits=self.fits
        )

    def restore(self, state: PairModelState) -> None:
        """Take ``state`` back into a new model (the window keeps this model's ``lookback``)."""
        self.ys.extend(state.ys)
        self.xs.extend(state.xs)
        self.fit = None if state.fit is None else record_of(HedgeFit, state.fit)
        self._since_fit, self.fits = state.since_fit, state.fits

    def update(self, y: float, x: float) -> float | None:
        """Add one observation; returns its z-score against the current fit (None while warming up)."""
        if not (math.isfinite(y) and math.isfinite(x)):
            raise ValueError(f"non-finite observation y={y!r} x={x!r}")
        self.ys.append(y)
        self.xs.append(x)
        self._since_fit += 1
        full = len(self.ys) == self.ys.maxlen
        if full and (self.fit is None or self._since_fit >= self.refit_every):
            self.fit = fit_pair(np.fromiter(self.ys, float), np.fromiter(self.xs, float), maxlag=self.maxlag)
            self._since_fit = 0
            self.fits += 1
        return None if self.fit is None else self.fit.zscore(y, x)
