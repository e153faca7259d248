"""A fixed-size ring of the events the dashboard keeps, addressed by absolute index.

Why not a ``deque``: a browser's cursor is an absolute index (how many events came before), and a
deque reaches its middle only by walking blocks, so twenty browsers near the end of a 50,000-event
window would each walk it on every read. Here ``get(index)`` is one modulo; what fell out of the
window is simply below :attr:`Ring.start`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Ring"]

T = TypeVar("T")


class Ring(Generic[T]):
    """The last ``capacity`` items appended; absolute indexes from ``start`` (inclusive) to ``end``."""

    __slots__ = ("_items", "capacity", "end", "start")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: list[T | None] = [None] * capacity
        self.start = 0
        self.end = 0

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, item: T) -> T | None:
        """Add ``item``; returns the item it pushed out of the window, if any."""
        slot = self.end % self.capacity
        evicted = self._items[slot] if self.end - self.start == self.capacity else None
        self._items[slot] = item
        self.end += 1
        if self.end - self.start > self.capacity:
            self.start += 1
        return evicted

    def get(self, index: int) -> T:
        """The item at absolute ``index`` (``start <= index < end``)."""
        if not self.start <= index < self.end:
            raise IndexError(f"index {index} outside the window [{self.start}, {self.end})")
        item = self._items[index % self.capacity]
        assert item is not None
        return item

    def slice(self, start: int, stop: int) -> list[T]:
        """The items at absolute indexes ``start`` to ``stop`` (within the window), as a list."""
        if not self.start <= start <= stop <= self.end:
            raise IndexError(f"[{start}, {stop}) outside the window [{self.start}, {self.end})")
        first, last = start % self.capacity, stop % self.capacity
        items = self._items
        chunk = items[first:last] if first < last or start == stop else items[first:] + items[:last]
        return chunk  # type: ignore[return-value]

    def first_after(self, key: Callable[[T], tuple[int, int]], bound: tuple[int, int]) -> int:
        """The absolute index of the first item whose ``key`` is greater than ``bound`` (keys grow with
        the index), or ``end`` when there is none."""
        low, high = self.start, self.end
        while low < high:
            middle = (low + high) // 2
            if key(self.get(middle)) <= bound:
                low = middle + 1
            else:
                high = middle
        return low

    def clear(self) -> None:
        self._items = [None] * self.capacity
        self.start = self.end
