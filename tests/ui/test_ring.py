"""The ring: absolute indexes, eviction, and finding where a reader resumes."""

from __future__ import annotations

import pytest

from citarion_host.ui.ring import Ring


def test_the_window_keeps_the_last_items_at_their_absolute_indexes() -> None:
    ring: Ring[int] = Ring(3)
    evicted = [ring.append(n) for n in range(5)]
    assert evicted == [None, None, None, 0, 1]
    assert (ring.start, ring.end, len(ring)) == (2, 5, 3)
    assert [ring.get(i) for i in range(2, 5)] == [2, 3, 4]
    with pytest.raises(IndexError):
        ring.get(1)


@pytest.mark.parametrize("bound", [0, 9, 10, 11, 14, 15, 40, 99])
def test_first_after_finds_the_first_greater_key(bound: int) -> None:
    ring: Ring[int] = Ring(8)
    for n in range(10, 60, 5):  # keys 10..55 by 5; the window keeps 20..55
        ring.append(n)
    index = ring.first_after(lambda n: (n, 0), (bound, 0))
    expected = next((i for i in range(ring.start, ring.end) if ring.get(i) > bound), ring.end)
    assert index == expected


@pytest.mark.parametrize(("start", "stop"), [(5, 5), (5, 8), (6, 12), (9, 12), (7, 10)])
def test_slices_across_the_wrap(start: int, stop: int) -> None:
    ring: Ring[int] = Ring(7)
    for n in range(12):  # the window keeps 5..11, stored wrapped around
        ring.append(n)
    assert ring.slice(start, stop) == list(range(start, stop))
    with pytest.raises(IndexError):
        ring.slice(4, 6)
