"""Micro-batching: at most `max_rows` records, at most `max_wait` after the first one.

The clock is injected so tests drive time instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

Consume = Callable[[int, float], list[T]]
Clock = Callable[[], float]


def collect(consume: Consume[T], max_rows: int, max_wait_s: float, clock: Clock, idle_timeout_s: float = 0.2) -> list[T]:
    """One micro-batch from `consume(num, timeout)`; empty when nothing arrived within idle_timeout_s.

    The wait budget starts with the first record, so a quiet topic costs nothing
    and a busy one is never held back longer than max_wait_s. The first call asks
    for one record: librdkafka's consume(num, timeout) returns only when `num`
    records are there or the timeout is over, so asking for a whole batch while idle
    would hold the first record for the full idle timeout.
    """
    batch: list[T] = []
    deadline: float | None = None
    while len(batch) < max_rows:
        num, timeout = (1, idle_timeout_s) if deadline is None else (max_rows - len(batch), max(0.0, deadline - clock()))
        got = consume(num, timeout)
        if got and deadline is None:
            deadline = clock() + max_wait_s
        batch.extend(got)
        if deadline is None:
            return batch  # idle: let the caller check for shutdown
        if clock() >= deadline:
            break
    return batch
