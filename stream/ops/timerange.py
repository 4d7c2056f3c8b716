"""Reading a topic between two record timestamps (`offsets_for_times`), without joining a group."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

from confluent_kafka import Consumer, Message, TopicPartition

from stream.config import KafkaSettings
from stream.errors import ConfigError


def parse_time(text: str) -> int:
    """Epoch milliseconds from epoch ms digits or an ISO-8601 time (UTC when no zone is given)."""
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"time {text!r}: expected epoch milliseconds or ISO-8601") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def read_range(kafka: KafkaSettings, topic: str, start_ms: int, end_ms: int | None, idle_s: float = 1.5) -> Iterator[Message]:
    """Committed records of `topic` with timestamp in [start_ms, end_ms), partition by partition in offset order."""
    # Negative timestamps are special codes to ListOffsets (latest, earliest, ...), not times.
    start_ms = max(start_ms, 0)
    consumer = Consumer(kafka.consumer_config(f"fraudstream-range-{time.time_ns()}"))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ConfigError(f"topic {topic} does not exist")
        parts = sorted(meta.partitions)
        starts = consumer.offsets_for_times([TopicPartition(topic, p, start_ms) for p in parts], timeout=10)
        ends: dict[int, int] = {}
        for p in parts:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        if end_ms is not None:
            for tp in consumer.offsets_for_times([TopicPartition(topic, p, end_ms) for p in parts], timeout=10):
                if tp.offset >= 0:
                    ends[tp.partition] = tp.offset
        assign = [tp for tp in starts if tp.offset >= 0 and tp.offset < ends[tp.partition]]
        if not assign:
            return
        consumer.assign(assign)
        remaining = {tp.partition for tp in assign}
        last = time.monotonic()
        while remaining and time.monotonic() - last < idle_s:
            for m in consumer.consume(1000, 0.2):
                if m.error() is not None:
                    continue
                last = time.monotonic()
                p, off = m.partition() or 0, m.offset() or 0
                if p not in remaining:
                    continue
                if off >= ends[p]:
                    remaining.discard(p)
                    continue
                _, ts = m.timestamp()
                if end_ms is None or ts < end_ms:
                    yield m
                if off + 1 >= ends[p]:
                    remaining.discard(p)
    finally:
        consumer.close()
