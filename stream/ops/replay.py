"""`fraudstream replay`: re-publish a time range of a topic, keys, timestamps and headers kept."""

from __future__ import annotations

from confluent_kafka import Producer

from stream.config import KafkaSettings
from stream.kafka.calls import produce
from stream.ops.timerange import read_range


def replay(kafka: KafkaSettings, topic: str, start_ms: int, end_ms: int | None, to_topic: str) -> int:
    """Copy records of `topic` with timestamps in [start_ms, end_ms) to `to_topic`; returns how many."""
    producer = Producer(kafka.producer_config(None, client_id="fraudstream-replay"))
    n = 0
    for m in read_range(kafka, topic, start_ms, end_ms):
        _, ts = m.timestamp()
        headers = m.headers()
        kept = list(headers.items()) if isinstance(headers, dict) else headers
        produce(producer, to_topic, m.value(), m.key(), kept, timestamp=ts)
        n += 1
        if n % 1000 == 0:
            producer.poll(0)
    producer.flush(60)
    return n
