"""PAR: Engle-Granger recovers a planted hedge ratio; independent random walks do not pass the gate."""

from __future__ import annotations

import numpy as np
import pytest
from citarion_bots.market.paths import cointegrated_pair, random_walk
from citarion_bots.quant.pairs import PairModel, fit_pair


@pytest.mark.parametrize("seed", range(20))
def test_planted_beta_2_is_recovered_within_0_05(seed: int) -> None:
    path = cointegrated_pair(np.random.default_rng(seed), 500, beta=2.0, alpha=10.0)
    fit = fit_pair(path.y, path.x)
    assert abs(fit.beta - 2.0) < 0.05, fit
    assert fit.pvalue < 0.01 and fit.gate(0.05)
    # the z-score is the residual in residual sigmas
    z = fit.zscore(path.y[-1], path.x[-1])
    assert z == pytest.approx((path.y[-1] - fit.alpha - fit.beta * path.x[-1]) / fit.resid_std)


def walks(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return random_walk(rng, 500, start=200.0, sigma=1.0), random_walk(rng, 500, start=100.0, sigma=0.5)


def test_two_independent_random_walks_keep_the_gate_closed() -> None:
    fit = fit_pair(*walks(11))
    assert fit.pvalue > 0.05 and not fit.gate(0.05), fit


def test_the_gate_passes_independent_walks_at_about_its_size() -> None:
    # a 5 % test wrongly opens the gate for about 5 % of unrelated pairs, and not much more
    opened = sum(fit_pair(*walks(seed), maxlag=4).gate(0.05) for seed in range(100))
    assert opened <= 10, opened


def test_the_rolling_model_refits_on_schedule_and_matches_a_direct_fit() -> None:
    path = cointegrated_pair(np.random.default_rng(4), 260, beta=2.0)
    model = PairModel(lookback=200, refit_every=25)
    scores = [model.update(float(y), float(x)) for y, x in zip(path.y, path.x, strict=True)]
    assert all(s is None for s in scores[:199]) and scores[199] is not None
    assert model.fits == 3  # at 200, 225 and 250 observations
    direct = fit_pair(path.y[50:250], path.x[50:250])
    assert model.fit is not None and model.fit.beta == pytest.approx(direct.beta, rel=1e-12)
    with pytest.raises(ValueError, match="non-finite"):
        model.update(float("nan"), 1.0)
