"""Micro-batching: at most `max_rows` records, at most `max_wait` after the first one.

Clock and sleep are injected so tests drive time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

Consume = Callable[[int, float], list[T]]
Clock = Callable[[], float]
Sleep = Callable[[float], None]


def collect(
    consume: Consume[T],
    max_rows: int,
    max_wait_s: float,
    clock: Clock,
    idle_timeout_s: float = 0.2,
    sleep: Sleep = time.sleep,
) -> list[T]:
    """One micro-batch from `consume(num, timeout)`; empty when nothing arrived within idle_timeout_s.

    The wait budget starts with the first record, so a quiet topic costs nothing and a busy
    one is never held back longer than max_wait_s. The first record is asked for alone:
    librdkafka's consume(num, timeout) returns only when `num` records are there or the
    timeout is over, so asking for a whole batch while idle would hold it for the full
    timeout. The rest is taken without waiting inside consume: a consume that waits is
    woken for every record that arrives, which cost 55 µs of CPU per record here (as much
    as scoring it) against 5 µs for sleeping out the budget and then taking what is queued.
    """
    batch = consume(1, idle_timeout_s)
    if not batch:
        return batch  # idle: let the caller check for shutdown
    deadline = clock() + max_wait_s
    while len(batch) < max_rows:
        batch.extend(consume(max_rows - len(batch), 0.0))
        left = deadline - clock()
        if len(batch) >= max_rows or left <= 0:
            break
        sleep(left)
    return batch
