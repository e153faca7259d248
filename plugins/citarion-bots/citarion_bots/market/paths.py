"""Price paths with planted ground truth: random walks, Ornstein-Uhlenbeck, cointegrated pairs and
baskets, and cross-exchange gaps that open and close.

Every function takes a ``numpy.random.Generator`` and returns arrays plus the truth it planted, so a
test (or ``docs/market.md``) can say what a fitter must recover. Time is in *steps*; ``dt`` is the
length of one step in the unit the parameters are quoted in (e.g. ``dt = 1/10`` when theta is per
bar and a bar has 10 steps).

* OU, exact discretisation (no Euler bias)::

      x[t+1] = mu + (x[t] - mu) e^(-theta dt) + sigma sqrt((1 - e^(-2 theta dt)) / (2 theta)) N(0, 1)

  stationary standard deviation ``sigma / sqrt(2 theta)``.
* Cointegrated pair: x a random walk, ``y = alpha + beta x + u`` with u an OU around 0.
* Cointegrated basket of k: legs 2..k random walks, leg 1 solved from ``sum(w_i p_i) = c + u``
  (w_1 != 0), u an OU around 0: ``w . p`` is stationary, every other combination is not.
* Gaps: episodes start as a Bernoulli(rate) per step (never overlapping), ramp linearly to
  ``+/- size`` over ``open_steps``, hold ``hold_steps``, ramp back over ``close_steps``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "BasketPath",
    "GapEpisode",
    "GapPath",
    "PairPath",
    "cointegrated_basket",
    "cointegrated_pair",
    "gap_path",
    "ou_path",
    "random_walk",
]

Array = npt.NDArray[np.float64]


def random_walk(rng: np.random.Generator, n: int, *, start: float, sigma: float, drift: float = 0.0) -> Array:
    """``start`` plus cumulated N(drift, sigma) steps; ``n`` values, the first is ``start``."""
    steps = rng.normal(drift, sigma, n - 1) if n > 1 else np.empty(0)
    return np.concatenate([[start], start + np.cumsum(steps)])


def ou_path(
    rng: np.random.Generator,
    n: int,
    *,
    mu: float,
    theta: float,
    sigma: float,
    dt: float = 1.0,
    x0: float | None = None,
) -> Array:
    """An OU path of ``n`` values; ``x0`` defaults to a draw from the stationary distribution."""
    if theta <= 0 or sigma < 0 or dt <= 0:
        raise ValueError(f"need theta > 0, sigma >= 0, dt > 0; got {theta}, {sigma}, {dt}")
    b = math.exp(-theta * dt)
    step_sd = sigma * math.sqrt((1 - b * b) / (2 * theta))
    out = np.empty(n)
    out[0] = mu + sigma / math.sqrt(2 * theta) * rng.standard_normal() if x0 is None else x0
    shocks = rng.standard_normal(n - 1) * step_sd
    for t in range(1, n):
        out[t] = mu + (out[t - 1] - mu) * b + shocks[t - 1]
    return out


@dataclass(frozen=True, slots=True)
class PairPath:
    x: Array
    y: Array
    alpha: float
    beta: float
    spread: Array  # y - alpha - beta x, the planted OU


def cointegrated_pair(
    rng: np.random.Generator,
    n: int,
    *,
    beta: float,
    alpha: float = 0.0,
    x0: float = 100.0,
    x_sigma: float = 1.0,
    theta: float = 0.2,
    spread_sigma: float = 0.5,
    dt: float = 1.0,
) -> PairPath:
    """x a random walk (step sd ``x_sigma * sqrt(dt)``), ``y = alpha + beta x + u``, u = OU(0, theta)."""
    x = random_walk(rng, n, start=x0, sigma=x_sigma * math.sqrt(dt))
    u = ou_path(rng, n, mu=0.0, theta=theta, sigma=spread_sigma, dt=dt)
    return PairPath(x=x, y=alpha + beta * x + u, alpha=alpha, beta=beta, spread=u)


@dataclass(frozen=True, slots=True)
class BasketPath:
    prices: Array  # (n, k)
    weights: tuple[float, ...]
    constant: float
    noise: Array  # w . p - constant, the planted OU


def cointegrated_basket(
    rng: np.random.Generator,
    n: int,
    *,
    weights: Sequence[float] = (1.0, -0.5, -0.5),
    starts: Sequence[float] = (100.0, 100.0, 100.0),
    sigmas: Sequence[float] = (1.0, 1.0, 1.0),
    theta: float = 0.2,
    noise_sigma: float = 0.5,
    dt: float = 1.0,
) -> BasketPath:
    """Legs 2..k random walks from ``starts``; leg 1 such that ``w . p = c + u`` (c from the starts)."""
    k = len(weights)
    if not (k >= 2 and len(starts) == k and len(sigmas) == k and weights[0] != 0):
        raise ValueError("need >= 2 legs, matching starts and sigmas, and a non-zero first weight")
    prices = np.empty((n, k))
    for i in range(1, k):
        prices[:, i] = random_walk(rng, n, start=starts[i], sigma=sigmas[i] * math.sqrt(dt))
    constant = math.fsum(w * s for w, s in zip(weights, starts, strict=True))
    u = ou_path(rng, n, mu=0.0, theta=theta, sigma=noise_sigma, dt=dt)
    rest = prices[:, 1:] @ np.asarray(weights[1:], dtype=float)
    prices[:, 0] = (constant + u - rest) / weights[0]
    return BasketPath(prices=prices, weights=tuple(float(w) for w in weights), constant=constant, noise=u)


@dataclass(frozen=True, slots=True)
class GapEpisode:
    start: int  # first step of the ramp up
    end: int  # first step back at 0
    size: float  # signed peak, a fraction (0.002 = 20 bps)


@dataclass(frozen=True, slots=True)
class GapPath:
    gap: Array  # fraction per step: venue price = reference * (1 + gap)
    episodes: tuple[GapEpisode, ...]


def gap_path(
    rng: np.random.Generator,
    n: int,
    *,
    rate: float,
    size: float,
    open_steps: int = 5,
    hold_steps: int = 20,
    close_steps: int = 5,
    jitter: float = 0.0,
) -> GapPath:
    """Gap episodes of peak ``+/- size`` (sign drawn per episode), plus N(0, jitter) noise per step."""
    if not (0 <= rate <= 1 and open_steps >= 1 and close_steps >= 1 and hold_steps >= 0):
        raise ValueError("need 0 <= rate <= 1, open_steps >= 1, close_steps >= 1, hold_steps >= 0")
    gap = rng.normal(0.0, jitter, n) if jitter > 0 else np.zeros(n)
    starts = rng.random(n) < rate
    signs = rng.choice((-1.0, 1.0), n)
    episodes: list[GapEpisode] = []
    length = open_steps + hold_steps + close_steps
    t = 0
    while t < n:
        if not starts[t] or t + length > n:
            t += 1
            continue
        peak = size * signs[t]
        shape = np.concatenate(
            [
                np.arange(1, open_steps + 1) / open_steps,
                np.ones(hold_steps),
                np.arange(close_steps - 1, -1, -1) / close_steps,
            ]
        )
        gap[t : t + length] += peak * shape
        episodes.append(GapEpisode(start=t, end=t + length - 1, size=peak))
        t += length
    return GapPath(gap=gap, episodes=tuple(episodes))
