"""Kafka client calls the checkpoint and the tools share: a call bounded in time, a call
run in the background, the offsets of a batch, and produce with back-pressure."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer, TopicPartition

from stream.errors import ClientResetError


def bounded(what: str, call: Callable[[], None], limit_s: float) -> None:
    """Run `call` on a daemon thread; its exception is re-raised here, and ClientResetError
    when it has not returned within limit_s (the thread is abandoned with its client)."""
    done = threading.Event()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the caller
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name=what, daemon=True).start()
    if not done.wait(limit_s):
        raise ClientResetError(f"{what} did not return within {limit_s:.0f} s (the client is abandoned)")
    if failure:
        raise failure[0]


class Flight:
    """`call()` started on a daemon thread of its own and waited for later (the checkpoint
    commits a full batch this way while the stage works on the next one), or with
    `background` False run here and now. `wait()` returns the exception the call raised (None:
    it returned); `started` and `ended` are the clock's times."""

    def __init__(self, call: Callable[[], None], clock: Callable[[], float], background: bool = True) -> None:
        self.started, self.ended = clock(), 0.0
        self.error: BaseException | None = None
        self._done = threading.Event()

        def work() -> None:
            try:
                call()
            except BaseException as exc:  # handed to whoever waits
                self.error = exc
            finally:
                self.ended = clock()
                self._done.set()

        if background:
            threading.Thread(target=work, name="commit", daemon=True).start()
        else:
            work()

    def wait(self) -> BaseException | None:
        self._done.wait()
        return self.error

    def running(self) -> bool:
        return not self._done.is_set()


def next_offsets(messages: Sequence[Message]) -> list[TopicPartition]:
    """Per partition, the offset after the last consumed message."""
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic() or "", m.partition() or 0)
        off = m.offset() or 0
        if off + 1 > last.get(key, -1):
            last[key] = off + 1
    return [TopicPartition(t, p, o) for (t, p), o in sorted(last.items())]


def first_offsets(messages: Sequence[Message]) -> list[TopicPartition]:
    """Per partition, the offset of the first consumed message (where to rewind)."""
    first: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic() or "", m.partition() or 0)
        off = m.offset() or 0
        if key not in first or off < first[key]:
            first[key] = off
    return [TopicPartition(t, p, o) for (t, p), o in sorted(first.items())]


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None,
    headers: list[tuple[str, bytes]] | list[tuple[str, str | bytes | None]] | None = None,
    timestamp: int = 0,
    on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
) -> None:
    """Produce, waiting for delivery reports to drain the local queue when it is full."""
    hdrs: list[tuple[str, str | bytes | None]] | None = [(k, v) for k, v in headers] if headers else None
    report: dict[str, Any] = {} if on_delivery is None else {"on_delivery": on_delivery}
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=hdrs, timestamp=timestamp, **report)
            return
        except BufferError:
            producer.poll(0.05)
