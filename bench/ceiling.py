"""The ceiling: consume → produce with the same sizes, batching and transactions, and no work."""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import Message

from stream.config import BatchSettings, KafkaSettings
from stream.kafka.lifecycle import StopFlag
from stream.kafka.loop import Process, StageLoop
from stream.records import BatchResult, Output


def run_loop(kafka: KafkaSettings, topic: str, group: str, batch: BatchSettings, process: Process, n: int) -> tuple[int, float]:
    """`process` in the stages' loop over the first n records of `topic`; returns (records, seconds
    from first consume to last commit)."""
    seen = [0]
    stop = StopFlag()

    def counted(msgs: Sequence[Message]) -> BatchResult:
        out = process(msgs)
        seen[0] += len(msgs)
        if seen[0] >= n:
            stop.set()
        return out

    loop = StageLoop(group, kafka, group, topic, f"{group}-tx", batch, counted)
    stats = loop.run(stop, max_idle_s=10)
    return stats.records, stats.active_s


def run_ceiling(kafka: KafkaSettings, topic: str, out_topic: str, group: str, batch: BatchSettings, n: int) -> tuple[int, float]:
    """Pass every record through unchanged; returns (records, seconds from first consume to last commit)."""

    def process(msgs: Sequence[Message]) -> BatchResult:
        return BatchResult([Output(out_topic, m.key(), m.value(), []) for m in msgs])

    return run_loop(kafka, topic, group, batch, process, n)
