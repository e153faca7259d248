"""STA: the AR(1) fit recovers a planted OU; a random walk keeps the unit-root gate closed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from citarion_bots.market.paths import ou_path, random_walk
from citarion_bots.quant.ou import OUModel, fit_ou


@pytest.mark.parametrize("seed", range(20))
def test_planted_theta_is_recovered_within_15_pct(seed: int) -> None:
    theta, mu, sigma = 0.2, 50.0, 2.0
    x = ou_path(np.random.default_rng(seed), 5000, mu=mu, theta=theta, sigma=sigma)
    fit = fit_ou(x, maxlag=None if seed == 0 else 4)  # None: Schwert's rule, 33 lags (~100x slower)
    assert abs(fit.theta - theta) / theta < 0.15, fit
    assert fit.mu == pytest.approx(mu, abs=0.5)
    assert fit.sigma_eq == pytest.approx(sigma / math.sqrt(2 * theta), rel=0.1)
    assert fit.gate(0.05) and fit.half_life == pytest.approx(math.log(2) / fit.theta)


def test_theta_per_bar_from_a_path_sampled_in_steps() -> None:
    x = ou_path(np.random.default_rng(9), 20_000, mu=100.0, theta=0.2, sigma=1.0, dt=0.1)
    fit = fit_ou(x, dt=0.1, maxlag=4)
    assert abs(fit.theta - 0.2) / 0.2 < 0.15, fit


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_random_walk_keeps_the_gate_closed(seed: int) -> None:
    fit = fit_ou(random_walk(np.random.default_rng(seed), 1000, start=100.0, sigma=1.0))
    assert fit.adf_pvalue > 0.05 and not fit.gate(0.05), fit


def test_the_rolling_model_scores_in_equilibrium_sigmas() -> None:
    x = ou_path(np.random.default_rng(3), 600, mu=10.0, theta=0.2, sigma=1.0)
    model = OUModel(lookback=500, refit_every=50)
    scores = [model.update(float(v)) for v in x]
    assert scores[498] is None and scores[499] is not None
    assert model.fit is not None
    assert scores[-1] == pytest.approx((x[-1] - model.fit.mu) / model.fit.sigma_eq)
    flat = fit_ou(np.full(50, 3.0))
    assert not flat.gate(0.05) and flat.zscore(3.0) == 0.0
