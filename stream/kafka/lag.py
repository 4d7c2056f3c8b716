"""How far a stage is behind: records waiting on its partitions, for the stall check and the lag gauge."""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from stream.metrics import Metrics


def waiting_records(consumer: Consumer) -> int | None:
    """Records between the position and the high watermark over the owned partitions; None
    when the broker cannot tell (it is away: the failing batches say so)."""
    try:
        owned = consumer.assignment()
        waiting = 0
        for tp in consumer.position(owned) if owned else []:
            _, high = consumer.get_watermark_offsets(tp, timeout=2)
            if tp.offset >= 0 and high > tp.offset:
                waiting += high - tp.offset
    except KafkaException:
        return None
    return waiting


def record_lag(consumer: Consumer, topic: str, msgs: Sequence[Message], metrics: Metrics) -> None:
    """The lag gauge per partition of the batch, from the cached high watermarks."""
    last: dict[int, int] = {}
    for msg in msgs:
        last[msg.partition() or 0] = max(last.get(msg.partition() or 0, -1), msg.offset() or 0)
    for partition, offset in last.items():
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
        except KafkaException:
            continue
        metrics.lag.labels(str(partition)).set(max(high - offset - 1, 0))


def idle_stall(consumer: Consumer, metrics: Metrics, now: float) -> int:
    """Idle with records waiting on owned partitions: a stall unless it clears. The records
    waiting once the stall lasted STALL_S (the clients are then rebuilt), else 0."""
    waiting = waiting_records(consumer)
    if waiting == 0:
        metrics.progressed()
    elif waiting is not None:
        metrics.waiting(now)
        if metrics.stalled(now):
            return waiting
    return 0
