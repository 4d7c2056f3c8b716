"""A circuit breaker with an injected clock.

closed ──(failures ≥ threshold)──► open ──(reset_after_s elapsed)──► half-open
  ▲                                  ▲                                  │
  └────────────(a trial succeeds)────┼───────────(a trial fails)────────┘

While open, callers skip the dependency and degrade at once instead of waiting
on its timeouts every batch; after `reset_after_s` one trial call is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum


class State(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, name: str, failure_threshold: int, reset_after_s: float, clock: Callable[[], float]) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.clock = clock
        self.failures = 0
        self.opened_at = 0.0
        self._state = State.CLOSED

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self.clock() - self.opened_at >= self.reset_after_s:
            self._state = State.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May the dependency be called now?"""
        return self.state is not State.OPEN

    def success(self) -> None:
        self.failures = 0
        self._state = State.CLOSED

    def failure(self) -> None:
        self.failures += 1
        if self._state is State.HALF_OPEN or self.failures >= self.failure_threshold:
            self._state = State.OPEN
            self.opened_at = self.clock()
