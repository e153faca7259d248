"""Handler durations per bot in fixed buckets: what ``citarion_bot_handler_duration_seconds`` reads.

Why not prometheus_client's ``Histogram.observe`` on the hot path: it takes a lock and walks its
buckets, about 1 µs per call, and the demo calls bot handlers some 60,000 times a second; a bisect
into a list costs a tenth of that. The metrics endpoint turns these counts into a Prometheus histogram
at scrape time (``ui/metrics.py``). The host only counts once asked (``Host.time_handlers``), so a
run without a scraped dashboard pays nothing.
"""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["BUCKETS", "HandlerTimings"]

#: Upper bounds in seconds (``le``), from 5 µs (a handler that only updates a dict) to 10 s.
BUCKETS: tuple[float, ...] = (
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class HandlerTimings:
    """Counts of handler durations per bucket (the last slot: over the largest bound), and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus wants them, ``+Inf`` last."""
        pairs, running = [], 0
        for bound, count in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            pairs.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return pairs
