"""The one door to statsmodels: typed results out of its untyped API, imported on first use.

statsmodels takes ~2 s to import. The host loads every bot module when it discovers plugins, so
importing it at module level would slow every run and every test that never fits a model; the
import happens inside the first call instead (Python caches it after that).

The statistics themselves are statsmodels' own (Engle-Granger, augmented Dickey-Fuller,
Johansen): the project never hand-writes a statistics test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["JohansenResult", "adf_pvalue", "engle_granger_pvalue", "johansen"]

Array = npt.NDArray[np.float64]


def adf_pvalue(
    series: Array, *, regression: Literal["c", "ct", "n"] = "c", maxlag: int | None = None
) -> float:
    """MacKinnon p-value of the augmented Dickey-Fuller test (H0: a unit root), lags chosen by AIC.

    ``maxlag`` None is Schwert's rule ``12 (n/100)^(1/4)`` (statsmodels' default): 33 lags for 5000
    points, which costs ~100x a ``maxlag`` of 4. Bots refitting every few bars pass a small one.
    """
    from statsmodels.tsa.stattools import adfuller  # type: ignore[import-untyped]

    result = adfuller(
        np.asarray(series, dtype=float),
        maxlag=maxlag,
        regression=regression,
        autolag="AIC",
        result_object=True,
    )
    return float(result.pvalue)


def engle_granger_pvalue(y: Array, x: Array, *, maxlag: int | None = None) -> float:
    """p-value of the Engle-Granger two-step test (H0: y and x are *not* cointegrated); ``maxlag``
    as for :func:`adf_pvalue` (the residual test is an ADF)."""
    from statsmodels.tsa.stattools import coint

    result = coint(np.asarray(y, dtype=float), np.asarray(x, dtype=float), trend="c", maxlag=maxlag)
    return float(result.pvalue)


@dataclass(frozen=True, slots=True)
class JohansenResult:
    """The Johansen trace test: statistics and critical values per hypothesised rank r = 0..k-1."""

    trace: tuple[float, ...]
    critical: tuple[tuple[float, float, float], ...]  # 90 %, 95 %, 99 % per r
    eigenvalues: tuple[float, ...]
    eigenvectors: tuple[tuple[float, ...], ...]  # column j (vectors[i][j]) belongs to eigenvalues[j]


def johansen(prices: Array, *, det_order: int = 0, k_ar_diff: int = 1) -> JohansenResult:
    """statsmodels' ``coint_johansen`` on an (n, k) array; eigenvalues come sorted, largest first."""
    from statsmodels.tsa.vector_ar.vecm import coint_johansen  # type: ignore[import-untyped]

    result = coint_johansen(np.asarray(prices, dtype=float), det_order, k_ar_diff)
    return JohansenResult(
        trace=tuple(float(v) for v in result.lr1),
        critical=tuple((float(a), float(b), float(c)) for a, b, c in result.cvt),
        eigenvalues=tuple(float(v) for v in result.eig),
        eigenvectors=tuple(tuple(float(v) for v in row) for row in result.evec),
    )
