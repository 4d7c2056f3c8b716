"""`fraudstream dlq`: list, show and re-drive dead-lettered records.

Re-driving produces the untouched original bytes back to their source topic (or
another one) with the original key, plus a `dlq.redriven_from` header naming the
DLQ offset, so a fixed consumer can try them again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from stream.config import KafkaSettings
from stream.deadletter import headers_dict
from stream.errors import BrokerError
from stream.kafka.calls import produce
from stream.kafka.topics import missing_topics


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


def target_of(kafka: KafkaSettings, letter: DeadLetter, to_topic: str | None) -> str:
    return to_topic or letter.headers.get("source.topic") or kafka.topics.transactions


def redrive(kafka: KafkaSettings, letters: list[DeadLetter], to_topic: str | None = None, timeout_s: float = 30.0) -> int:
    """Produce the letters' original bytes back; returns how many the broker acknowledged.

    Every target topic must exist (nothing is created here: a typo must not make a topic),
    and every delivery must be acknowledged: BrokerError otherwise, naming what was not."""
    targets = sorted({target_of(kafka, d, to_topic) for d in letters})
    if targets:
        missing = missing_topics(kafka, targets)
        if missing:
            raise BrokerError(f"target topic {', '.join(missing)} does not exist; nothing was re-driven")
    failed: list[str] = []
    acked = 0

    def report(err: KafkaError | None, msg: Message) -> None:
        nonlocal acked
        if err is None:
            acked += 1
        else:
            failed.append(f"{msg.topic()}: {err.str()}")

    producer = Producer(kafka.producer_config(None, client_id="fraudstream-dlq") | {"message.timeout.ms": int(timeout_s * 1000)})
    for d in letters:
        header = [("dlq.redriven_from", f"{kafka.topics.dlq}/{d.ref}".encode())]
        produce(producer, target_of(kafka, d, to_topic), d.value, d.key, header, on_delivery=report)
    left = producer.flush(timeout_s + 5)
    if failed or left or acked != len(letters):
        raise BrokerError(
            f"{acked} of {len(letters)} record(s) re-driven; not delivered: {len(letters) - acked}"
            + (f" ({failed[0]})" if failed else "")
        )
    return acked
