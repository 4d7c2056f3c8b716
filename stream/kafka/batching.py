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

BUSY_STEP_S = 0.0005


def collect(
    consume: Consume[T],
    max_rows: int,
    max_wait_s: float,
    clock: Clock,
    idle_timeout_s: float = 0.2,
    sleep: Sleep = time.sleep,
    busy: Callable[[], bool] = lambda: False,
) -> list[T]:
    """One micro-batch from `consume(num, timeout)`; empty when nothing arrived within idle_timeout_s.

    The wait budget starts with the first record, so a quiet topic costs nothing and a busy
    one is never held back longer than max_wait_s. The first record is asked for alone:
    librdkafka's consume(num, timeout) returns only when `num` records are there or the
    timeout is over, so asking for a whole batch while idle would hold it for the full
    timeout. The rest is taken without waiting inside consume: a consume that waits is
    woken for every record that arrives, which cost 55 µs of CPU per record here (as much
    as scoring it) against 5 µs for sleeping out the budget and then taking what is queued.

    While `busy()` (the batch before is still committing) the batch goes on growing past
    max_wait_s, up to max_rows, in steps of BUSY_STEP_S: it could not be committed before
    anyway, so the records that arrive meanwhile join it instead of waiting for a transaction
    of their own. A full batch is processed at once, overlapping that commit.
    """
    batch = consume(1, idle_timeout_s)
    if not batch:
        return batch  # idle: let the caller check for shutdown
    deadline = clock() + max_wait_s
    while len(batch) < max_rows:
        batch.extend(consume(max_rows - len(batch), 0.0))
        left = deadline - clock()
        if len(batch) >= max_rows:
            break
        if left <= 0:
            if not busy():
                break
            left = BUSY_STEP_S
        sleep(left)
    return batch
