"""Johansen cointegration of a basket (MRB): its rank, the weights, the basket's value.

statsmodels' ``coint_johansen`` gives the trace statistics for ranks r = 0..k-1 and their critical
values. The rank is the number of hypotheses ``rank <= r`` rejected in a row from r = 0: rank 0
means no stationary combination exists, so there is nothing to trade. The weights are the first
eigenvector (largest eigenvalue: the most strongly mean-reverting combination) scaled so the first
symbol's weight is 1, e.g. a basket built as ``p1 - 0.5 p2 - 0.5 p3 = noise`` gives ~[1, -0.5, -0.5].

The basket's value is ``w . p``; its z-score is against the window's mean and standard deviation of
that value. :class:`BasketModel` keeps the window as a rolling deque and refits every
``refit_every`` observations.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt

from ..plain import Record, record, record_of
from ._stats import johansen

__all__ = ["BasketFit", "BasketModel", "BasketModelState", "fit_basket"]

Array = npt.NDArray[np.float64]
_LEVELS = {0.10: 0, 0.05: 1, 0.01: 2}


@dataclass(frozen=True, slots=True)
class BasketFit:
    rank: int
    weights: tuple[float, ...]
    mean: float
    std: float
    trace: tuple[float, ...]
    critical: tuple[float, ...]
    n: int

    def value(self, prices: Sequence[float]) -> float:
        return math.fsum(w * p for w, p in zip(self.weights, prices, strict=True))

    def zscore(self, prices: Sequence[float]) -> float:
        return (self.value(prices) - self.mean) / self.std if self.std > 0 else 0.0

    @property
    def gate(self) -> bool:
        return self.rank > 0 and self.std > 0


def fit_basket(
    prices: Array, *, significance: float = 0.05, det_order: int = 0, k_ar_diff: int = 1
) -> BasketFit:
    """Johansen on an (n, k) price array; weights normalised to a first weight of 1."""
    data = np.asarray(prices, dtype=float)
    if data.ndim != 2 or data.shape[1] < 2 or data.shape[0] < 30:
        raise ValueError(f"need an (n >= 30, k >= 2) array, got shape {data.shape}")
    if significance not in _LEVELS:
        raise ValueError(f"significance must be one of {sorted(_LEVELS)}, got {significance}")
    result = johansen(data, det_order=det_order, k_ar_diff=k_ar_diff)
    column = _LEVELS[significance]
    critical = tuple(row[column] for row in result.critical)
    rank = 0
    for stat, crit in zip(result.trace, critical, strict=True):
        if stat <= crit:
            break
        rank += 1
    first = [row[0] for row in result.eigenvectors]
    weights = tuple(w / first[0] for w in first) if first[0] != 0 else tuple(first)
    values = data @ np.asarray(weights)
    return BasketFit(
        rank=rank,
        weights=weights,
        mean=float(np.mean(values)),
        std=float(np.std(values, ddof=1)),
        trace=result.trace,
        critical=critical,
        n=data.shape[0],
    )


class BasketModelState(msgspec.Struct, kw_only=True):
    """A :class:`BasketModel`'s rows, its fit and where the refits stand."""

    rows: list[tuple[float, ...]] = []
    fit: Record | None = None
    since_fit: int = 0
    fits: int = 0


class BasketModel:
    """A rolling window of k prices with a Johansen fit refreshed every ``refit_every`` rows."""

    def __init__(self, lookback: int, refit_every: int, *, significance: float = 0.05) -> None:
        if lookback < 30 or refit_every < 1:
            raise ValueError(f"lookback must be >= 30 and refit_every >= 1, got {lookback}, {refit_every}")
        self.rows: deque[tuple[float, ...]] = deque(maxlen=lookback)
        self.refit_every = refit_every
        self.significance = significance
        self.fit: BasketFit | None = None
        self._since_fit = 0
        self.fits = 0

    def state(self) -> BasketModelState:
        fit = None if self.fit is None else record(self.fit)
        return BasketModelState(rows=list(self.rows), fit=fit, since_fit=self._since_fit, fits=self.fits)

    def restore(self, state: BasketModelState) -> None:
        """Take ``state`` back into a new model (the window keeps this model's ``lookback``)."""
        self.rows.extend(state.rows)
        self.fit = None if state.fit is None else record_of(BasketFit, state.fit)
        self._since_fit, self.fits = state.since_fit, state.fits

    def update(self, prices: Sequence[float]) -> float | None:
        """Add one row of prices; returns the basket's z-score (None while warming up)."""
        self.rows.append(tuple(prices))
        self._since_fit += 1
        if len(self.rows) == self.rows.maxlen and (self.fit is None or self._since_fit >= self.refit_every):
            self.fit = fit_basket(np.array(self.rows, dtype=float), significance=self.significance)
            self._since_fit = 0
            self.fits += 1
        return None if self.fit is None else self.fit.zscore(prices)
