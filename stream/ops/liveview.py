"""The demo's live view: decisions by route, end-to-end latency and a per-second trend.

Latency is measured as the bench measures it: from the input record's append time on the
broker to the moment a read_committed consumer (the view's own) receives the decision —
the commit of the stage's transaction included, which the decision's own `latency_ms`
(stamped before the commit) leaves out. The first `warm_up_s` seconds of traffic (cold
caches, a broker's first batches, group joins settling) are counted but not timed.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

ROUTES = ("XGB_APPROVE", "XGB_BLOCK", "DEEP", "XGB_FALLBACK", "RULES", "SAFE_DEFAULT")
OUTCOMES = ("APPROVE", "REVIEW", "BLOCK")
TREND_SECONDS = 10


class LiveStats:
    """Counts and latencies of the decisions received so far (wall clock in ms, injectable)."""

    def __init__(self, warm_up_s: float, clock_ms: Callable[[], float] = lambda: time.time() * 1000) -> None:
        self.clock_ms = clock_ms
        self.started_ms = clock_ms()
        self.warm_up_ms = warm_up_s * 1000
        self.counts: Counter[tuple[str, str]] = Counter()
        self.latencies: list[float] = []  # after the warm-up
        self.seconds: deque[tuple[int, int, list[float]]] = deque(maxlen=TREND_SECONDS + 1)  # (second, decisions, latencies)

    @property
    def decided(self) -> int:
        return sum(self.counts.values())

    def add(self, route: str, outcome: str, decided_at: int, latency_ms: float) -> None:
        """One decision received now; its input was appended at decided_at - latency_ms."""
        now = self.clock_ms()
        self.counts[(route, outcome)] += 1
        second = int((now - self.started_ms) // 1000)
        if not self.seconds or self.seconds[-1][0] != second:
            self.seconds.append((second, 0, []))
        _, n, lats = self.seconds[-1]
        latency = max(now - (decided_at - latency_ms), 0.0)
        self.seconds[-1] = (second, n + 1, lats)
        if now - self.started_ms >= self.warm_up_ms:
            self.latencies.append(latency)
            lats.append(latency)

    def percentiles(self) -> tuple[float, float, float] | None:
        if not self.latencies:
            return None
        lat = np.array(self.latencies)
        return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), float(lat.max())

    def trend(self) -> str:
        """The last complete seconds: decisions/s and p99, oldest first."""
        done = list(self.seconds)[:-1][-TREND_SECONDS:]
        return "  ".join(f"{n:,}/s p99 {np.percentile(lats, 99):.0f}ms" if lats else f"{n:,}/s" for _, n, lats in done)

    def view(self, sent: int, total: int) -> Group:
        """The table, then the latency and trend lines at full width."""
        p = self.percentiles()
        if p is None:
            timing = f"latency: timed after a {self.warm_up_ms / 1000:.0f} s warm-up"
        else:
            timing = f"latency to a read_committed consumer: p50 {p[0]:.0f} ms · p99 {p[1]:.0f} ms · max {p[2]:.0f} ms"
        return Group(self.table(sent, total), Text(timing), Text(f"last seconds: {self.trend() or '-'}"))

    def table(self, sent: int, total: int) -> Table:
        elapsed_s = max((self.clock_ms() - self.started_ms) / 1000, 1e-6)
        n = self.decided
        t = Table(title=f"fraudstream demo — {n:,}/{total:,} decided, {n / elapsed_s:,.0f} decisions/s, {sent:,} sent")
        t.add_column("route")
        for o in OUTCOMES:
            t.add_column(o, justify="right")
        for r in ROUTES:
            if any(k[0] == r for k in self.counts):
                t.add_row(r, *(f"{self.counts[(r, o)]:,}" for o in OUTCOMES))
        return t
