"""Noticing that the whole process stood still (SIGSTOP, a frozen VM or container, swap).

A process stopped past half its session timeout may have been evicted from its group
while it stood: its partitions went to a peer, which decided records from the committed
offsets on. Once it runs again its consumer can still hold the old positions (librdkafka
does not always report the partitions lost: a chaos run once repeated 974 of a peer's
decisions that way), and the group may be about to give it the same partitions back. So
the loop does not wait to be told: it drops the batch in hand and rebuilds its clients,
which start from the committed offsets (`stream.kafka.loop`). A stop is not a slow call:
a thread ticks every TICK_S, and only a time in which neither it nor the loop ran counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from stream.errors import ClientResetError

TICK_S = 0.25
SHARE_OF_SESSION = 0.5  # a stop this long may already have cost the membership


class PauseWatch:
    """The longest stop of the whole process since it was last taken."""

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s, self.clock = limit_s, clock
        self._last = clock()
        self._longest = 0.0
        self._ticking = False
        self._lock = threading.Lock()

    @classmethod
    def for_session(cls, session_timeout_ms: int) -> PauseWatch:
        return cls(session_timeout_ms / 1000 * SHARE_OF_SESSION)

    def tick(self) -> None:
        """One tick: the time since the one before counts as a stop if it is the longest."""
        now = self.clock()
        with self._lock:
            self._longest = max(self._longest, now - self._last)
            self._last = now

    def start(self, running: Callable[[], bool]) -> None:
        """Tick on a daemon thread while `running()`."""
        self._ticking = True
        self.tick()
        self.take()

        def ticker() -> None:
            while running():
                time.sleep(TICK_S)
                self.tick()

        threading.Thread(target=ticker, name="pause-watch", daemon=True).start()

    def take(self) -> float | None:
        """The longest stop since the last take when it reached `limit_s`, else None; forgotten
        once taken. Right after a stop the caller may run before the ticker: the time since
        the last tick counts too (once the ticker runs)."""
        now = self.clock()
        with self._lock:
            longest = max(self._longest, now - self._last) if self._ticking else self._longest
            self._longest = 0.0
            if self._ticking:
                self._last = now
        return longest if longest >= self.limit_s else None

    def check(self) -> None:
        """ClientResetError after a stop that may have cost the partitions: the caller drops the
        batch in hand (not committed) and rebuilds its clients."""
        stopped = self.take()
        if stopped is not None:
            raise ClientResetError(f"the process stood still for {stopped:.1f} s; its partitions may have moved meanwhile")
