"""MRB: Johansen recovers the planted basket weights; independent walks have rank 0."""

from __future__ import annotations

import numpy as np
import pytest
from citarion_bots.market.paths import cointegrated_basket, random_walk
from citarion_bots.quant.johansen import BasketModel, fit_basket


@pytest.mark.parametrize("seed", range(20))
def test_planted_weights_are_recovered_within_0_05(seed: int) -> None:
    path = cointegrated_basket(np.random.default_rng(seed), 600, weights=(1.0, -0.5, -0.5))
    fit = fit_basket(path.prices)
    assert fit.rank >= 1 and fit.gate
    assert np.allclose(fit.weights, (1.0, -0.5, -0.5), atol=0.05), fit.weights
    assert fit.zscore(path.prices[-1]) == pytest.approx((fit.value(path.prices[-1]) - fit.mean) / fit.std)


def walks(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([random_walk(rng, 600, start=100.0, sigma=0.5) for _ in range(3)])


def test_independent_random_walks_have_rank_0() -> None:
    fit = fit_basket(walks(21))
    assert fit.rank == 0 and not fit.gate, fit.trace


def test_independent_walks_pass_at_about_the_tests_size() -> None:
    # a 5 % trace test; Johansen's is known to over-reject somewhat in samples of a few hundred
    opened = sum(fit_basket(walks(seed)).gate for seed in range(100))
    assert opened <= 15, opened


def test_the_rolling_model_and_input_checks() -> None:
    path = cointegrated_basket(np.random.default_rng(5), 320)
    model = BasketModel(lookback=300, refit_every=10)
    scores = [model.update(list(row)) for row in path.prices]
    assert scores[298] is None and scores[299] is not None and model.fit is not None
    with pytest.raises(ValueError, match="significance"):
        fit_basket(path.prices, significance=0.2)
    with pytest.raises(ValueError, match="array"):
        fit_basket(path.prices[:10])
