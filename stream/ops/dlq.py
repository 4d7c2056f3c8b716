"""`fraudstream dlq`: list, show and re-drive dead-lettered records.

Re-driving produces the untouched original bytes back to their source topic (or
another one) with the original key, plus a `dlq.redriven_from` header naming the
DLQ offset, so a fixed consumer can try them again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from stream.config import KafkaSettings
from stream.deadletter import headers_dict
from stream.kafka.calls import produce


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"


def read_dlq(kafka: KafkaSettings, idle_s: float = 2.0) -> Iterator[DeadLetter]:
    """Every committed DLQ record, oldest first per partition, without joining any group."""
    topic = kafka.topics.dlq
    consumer = Consumer(kafka.consumer_config(f"fraudstream-dlq-reader-{time.time_ns()}"))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        last = time.monotonic()
        while time.monotonic() - last < idle_s:
            for m in consumer.consume(500, 0.5):
                if m.error() is None:
                    last = time.monotonic()
                    yield _letter(m)
    finally:
        consumer.close()


def _letter(m: Message) -> DeadLetter:
    return DeadLetter(m.partition() or 0, m.offset() or 0, m.key(), m.value(), headers_dict(m.headers()))


def redrive(kafka: KafkaSettings, letters: list[DeadLetter], to_topic: str | None = None) -> int:
    """Produce the letters' original bytes back; returns how many were sent."""
    producer = Producer(kafka.producer_config(None, client_id="fraudstream-dlq"))
    for d in letters:
        target = to_topic or d.headers.get("source.topic") or kafka.topics.transactions
        produce(producer, target, d.value, d.key, [("dlq.redriven_from", f"{kafka.topics.dlq}/{d.ref}".encode())])
    producer.flush(30)
    return len(letters)
