"""The stage's side of its consumer group: where each assigned partition starts, what
happens on revoke and loss, and the progress marks.

Where a partition starts: its committed offset; without one, the group's progress mark
(`stream.state.progress`) tells a first start (start at `kafka.first_start`) from offsets
the broker lost (OffsetsError: the stage stops rather than reprocess everything).
Consumers run with `auto.offset.reset=error`, so an offset out of range is reported,
never jumped over. Marks are written at most every MARK_EVERY_S, and on revoke and close.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal

import structlog
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition

from stream.config import KafkaSettings
from stream.errors import ClientResetError, FeatureStoreError, OffsetsError
from stream.metrics import Metrics
from stream.state.progress import ProgressMarks

log = structlog.get_logger("fraudstream.stage")

MARK_EVERY_S = 1.0


class Membership:
    def __init__(
        self,
        group_id: str,
        kafka: KafkaSettings,
        marks: ProgressMarks | None,
        metrics: Metrics,
        settle: Callable[[], None],
        warn: Callable[[str, str], None],
    ) -> None:
        self.group_id, self.kafka, self.marks, self.metrics = group_id, kafka, marks, metrics
        self.settle, self.warn = settle, warn
        self.log = log.bind(group=group_id)
        self.offsets_error: OffsetsError | None = None
        self._pending: dict[tuple[str, int], int] = {}
        self._marked_at = -1e18

    def subscribe(self, consumer: Consumer, topic: str) -> None:
        consumer.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost)

    def on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        placed, error = place(consumer, parts, self.group_id, self.marks, self.kafka.first_start, self.kafka.bootstrap)
        if error is not None and self.offsets_error is None:
            self.offsets_error = error
        consumer.incremental_assign(placed)
        self.log.info("partitions_assigned", partitions=[p.partition for p in parts])
        self.metrics.ready = True

    def on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        # Revocation only happens inside a consume call, while the batch before may still be
        # committing on its thread: settling waits for it (one that failed is rewound with
        # the batch being collected, by the loop). At-least-once batches still in flight
        # are settled so the next owner does not repeat them.
        self.log.info("partitions_revoked", partitions=[p.partition for p in parts])
        self.settle()
        self.flush_marks()
        self._after_revoke(consumer, parts)

    def on_lost(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        # Taken away (this member was evicted): nothing of ours may be committed for them.
        self.log.warning("partitions_lost", partitions=[p.partition for p in parts])
        self._after_revoke(consumer, parts)

    def _after_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in parts}
        try:
            left = [a for a in consumer.assignment() if (a.topic, a.partition) not in gone]
        except KafkaException:
            left = []
        self.metrics.ready = bool(left)

    def committed(self, offsets: Sequence[TopicPartition]) -> None:
        """Offsets just committed: marked (at most every MARK_EVERY_S)."""
        for tp in offsets:
            self._pending[(tp.topic, tp.partition)] = tp.offset
        if time.monotonic() - self._marked_at >= MARK_EVERY_S:
            self.flush_marks()

    def flush_marks(self) -> None:
        if self.marks is None or not self._pending:
            return
        try:
            self.marks.record([TopicPartition(t, p, o) for (t, p), o in self._pending.items()])
        except FeatureStoreError as exc:
            self.warn("progress_mark_failed", str(exc))
            return
        self._pending.clear()
        self._marked_at = time.monotonic()

    def usable(self, msgs: Sequence[Message]) -> list[Message]:
        """The messages without an error; an offset reset error (out of range, missing) stops the
        stage; a fatal consumer error (a static member fenced) asks for new clients."""
        good = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
            elif err.fatal() or err.code() == KafkaError._FATAL:
                raise ClientResetError(f"consumer failed fatally: {err.str()}")
            elif err.code() == KafkaError._AUTO_OFFSET_RESET and self.offsets_error is None:
                self.offsets_error = OffsetsError(
                    f"{m.topic()}:{m.partition()} of group {self.group_id}: {err.str()}; not jumping to another offset"
                )
            else:
                self.warn("consume_error", str(err))
        return good


def names(parts: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}:{tp.partition}" for tp in parts)


def place(
    consumer: Consumer,
    parts: list[TopicPartition],
    group_id: str,
    marks: ProgressMarks | None,
    first_start: Literal["earliest", "latest"],
    bootstrap: str,
) -> tuple[list[TopicPartition], OffsetsError | None]:
    """The partitions with their start offsets, and the error that must stop the stage (or None)."""
    try:
        committed = consumer.committed(parts, timeout=10)
    except KafkaException as exc:
        log.warning("committed_offsets_unknown", group=group_id, error=str(exc))
        return parts, None  # librdkafka fetches them itself; offset_reset=error guards a missing one
    fresh = [tp for tp in committed if tp.offset < 0]
    if not fresh:
        return committed, None
    try:
        marked = marks.marks(fresh) if marks is not None else {}
    except FeatureStoreError as exc:
        # Cannot tell a first start from lost offsets: do neither until it can be told.
        return committed, OffsetsError(
            f"{group_id}: no committed offset on {names(fresh)} and the progress marks cannot be read "
            f"({exc}); not starting those partitions blind"
        )
    error = None
    lost = [tp for tp in fresh if (tp.topic, tp.partition) in marked]
    if lost:
        where = ", ".join(f"{tp.topic}:{tp.partition} (marked {marked[(tp.topic, tp.partition)]})" for tp in lost)
        error = OffsetsError(
            f"group {group_id} committed on {where} before, but the broker has no committed offset for it now: "
            f"offsets were lost; not reprocessing from the start. To resume from the mark, set it, e.g. "
            f"kafka-consumer-groups.sh --bootstrap-server {bootstrap} --group {group_id} "
            f"--reset-offsets --to-offset N --topic TOPIC:PARTITION --execute"
        )
    lost_keys = {(tp.topic, tp.partition) for tp in lost}
    first = [tp for tp in fresh if (tp.topic, tp.partition) not in lost_keys]
    for tp in first:
        tp.offset = OFFSET_BEGINNING if first_start == "earliest" else OFFSET_END
    if first:
        log.info("first_start", group=group_id, partitions=[tp.partition for tp in first], at=first_start)
    return committed, error
