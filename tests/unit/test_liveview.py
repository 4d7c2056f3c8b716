"""The demo's live view: latency to the consumer after a warm-up, a per-second trend."""

from __future__ import annotations

import pandas as pd

from models.units import DAY_MS
from stream.ops.demo import _live_days
from stream.ops.liveview import LiveStats


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000.0

    def __call__(self) -> float:
        return self.ms


def test_latency_is_timed_to_the_consumer_and_only_after_the_warm_up() -> None:
    clock = Clock()
    stats = LiveStats(warm_up_s=2.0, clock_ms=clock)
    clock.ms += 500  # inside the warm-up: counted, not timed
    stats.add("XGB_APPROVE", "APPROVE", decided_at=int(clock.ms) - 100, latency_ms=900.0)
    assert stats.decided == 1 and stats.percentiles() is None
    clock.ms += 2_000
    # appended at decided_at - latency_ms = now - 30 - 12; received now: 42 ms, not the stamped 12
    stats.add("DEEP", "REVIEW", decided_at=int(clock.ms) - 30, latency_ms=12.0)
    assert stats.percentiles() == (42.0, 42.0, 42.0)
    assert stats.counts == {("XGB_APPROVE", "APPROVE"): 1, ("DEEP", "REVIEW"): 1}


def test_the_trend_shows_each_complete_second() -> None:
    clock = Clock()
    stats = LiveStats(warm_up_s=0.0, clock_ms=clock)
    for second, n in enumerate((3, 5, 2)):
        clock.ms = 1_000_000.0 + second * 1000
        for _ in range(n):
            stats.add("XGB_APPROVE", "APPROVE", decided_at=int(clock.ms) - 10, latency_ms=0.0)
    assert stats.trend() == "3/s p99 10ms  5/s p99 10ms"  # the current second is not complete yet
    table, timing, trend = stats.view(sent=10, total=10).renderables
    assert "10/10 decided" in str(getattr(table, "title", ""))
    assert str(timing) == "latency to a read_committed consumer: p50 10 ms · p99 10 ms · max 10 ms"
    assert str(trend) == "last seconds: 3/s p99 10ms  5/s p99 10ms"


def test_the_demo_streams_as_many_days_as_the_seconds_need() -> None:
    end = 60 * DAY_MS
    tx = pd.DataFrame({"event_time": [end - d * DAY_MS + 1 for d in range(60) for _ in range(100)]})
    last = end + 1
    assert _live_days(tx, 50) == (last - DAY_MS, 1)
    assert _live_days(tx, 250) == (last - 3 * DAY_MS, 3)
    cut, days = _live_days(tx, 10**9)
    assert days == 20 and cut == last - 20 * DAY_MS  # capped: the caller says it streams fewer
