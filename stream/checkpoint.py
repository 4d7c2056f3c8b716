"""The commit sequence of a micro-batch, in one place.

Exactly-once (default), per batch:
    1. begin the Kafka transaction;
    2. produce every output of the batch (decisions, buffer records, DLQ records);
    3. send the consumer's next offsets for the batch to the transaction;
    4. commit the transaction — outputs and offsets become visible together.
On any failure before 4 the transaction is aborted and the consumer rewound to the
batch's first offsets, so the batch is processed again and nothing is lost.

At-least-once: produce, flush, then commit the offsets synchronously.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from stream.dlq import Record
from stream.errors import BrokerError


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
) -> None:
    """Produce, waiting for delivery reports to drain the local queue when it is full."""
    hdrs: list[tuple[str, str | bytes | None]] | None = [(k, v) for k, v in headers] if headers else None
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=hdrs, timestamp=timestamp)
            return
        except BufferError:
            producer.poll(0.05)


class Checkpoint:
    """Commits one batch's outputs and offsets together."""

    def __init__(self, consumer: Consumer, producer: Producer, exactly_once: bool, timeout_s: float = 30.0) -> None:
        self.consumer = consumer
        self.producer = producer
        self.exactly_once = exactly_once
        self.timeout_s = timeout_s
        if exactly_once:
            producer.init_transactions(timeout_s)

    def commit(self, messages: Sequence[Message], outputs: Sequence[Record]) -> None:
        """Steps 1-4 above for one batch; BrokerError after rewinding when it fails."""
        offsets = next_offsets(messages)
        try:
            if self.exactly_once:
                self.producer.begin_transaction()  # 1
            for topic, key, value, headers in outputs:  # 2
                produce(self.producer, topic, value, key, headers)
            if self.exactly_once:
                self.producer.send_offsets_to_transaction(  # 3
                    offsets, self.consumer.consumer_group_metadata(), self.timeout_s
                )
                self.producer.commit_transaction(self.timeout_s)  # 4
            else:
                if self.producer.flush(self.timeout_s) > 0:
                    raise BrokerError("outputs not delivered within the timeout")
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.abort(messages)
            raise BrokerError(f"batch commit failed: {exc}") from exc

    def abort(self, messages: Sequence[Message]) -> None:
        """Abort the open transaction (if any) and rewind to the batch's first offsets."""
        if self.exactly_once:
            # No open transaction means nothing to abort.
            with contextlib.suppress(KafkaException):
                self.producer.abort_transaction(self.timeout_s)
        for tp in first_offsets(messages):
            # A partition revoked meanwhile is resumed by its new owner from the committed offset.
            with contextlib.suppress(KafkaException):
                self.consumer.seek(tp)
