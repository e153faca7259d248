"""A chart series with bounded memory: the newest points kept exactly, older ones thinned.

A long run would otherwise grow a PnL or price series without end. When a series reaches its
capacity, every second point of its older half is dropped: the chart keeps its shape over the whole
run at a coarser grain, and the recent past stays at full detail.
"""

from __future__ import annotations

__all__ = ["Series"]


class Series:
    """``(x, y)`` points in arrival order (``x``: data time in ms), at most ``capacity`` of them."""

    __slots__ = ("capacity", "thinned", "xs", "ys")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(capacity, 4)
        self.xs: list[int] = []
        self.ys: list[float] = []
        self.thinned = 0  # points dropped by thinning (reported, never silent)

    def __len__(self) -> int:
        return len(self.xs)

    def append(self, x: int, y: float) -> None:
        xs, ys = self.xs, self.ys
        if xs and xs[-1] == x:  # same time: the later value wins (one point per time)
            ys[-1] = y
            return
        xs.append(x)
        ys.append(y)
        if len(xs) > self.capacity:
            half = len(xs) // 2
            self.thinned += half - len(range(0, half, 2))
            self.xs = xs[:half:2] + xs[half:]
            self.ys = ys[:half:2] + ys[half:]

    @property
    def last(self) -> float | None:
        return self.ys[-1] if self.ys else None

    def to_dict(self) -> dict[str, list[int] | list[float]]:
        return {"x": list(self.xs), "y": list(self.ys)}
