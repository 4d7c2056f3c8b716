"""The consume → process → produce loop shared by the stages: a thin shell.

A stage supplies `process(messages) -> outputs`; the loop micro-batches, hands
the batch to the checkpoint (one Kafka transaction per batch) and, when a
dependency fails transiently, aborts, rewinds and backs off. SIGTERM/SIGINT stop
the loop between batches: the open batch finishes or is aborted, then the
consumer closes — nothing is lost. A shutdown that cannot finish within
SHUTDOWN_GRACE_S (a broker that does not answer) exits anyway: an open
transaction is aborted by the broker or by the next instance.

Healing, without a person: when a batch's outcome is unknown (ClientResetError: a
fenced producer, a commit that could not be resumed), or the stage has made no
progress for STALL_S while work waits (failing batches, or owned partitions with
lag and nothing consumed), the loop rebuilds its consumer and producer and resumes
from the committed offsets. After MAX_RESETS rebuilds without a committed batch
in between it stops with the last error (exit 1) for its supervisor to restart.
/healthz reports the stall from STALL_S on.

Where a partition starts: its committed offset; without one, the group's progress
mark (`stream.progress`) tells a first start (start at `kafka.first_start`) from
offsets the broker lost (OffsetsError: the stage stops rather than reprocess).
"""

from __future__ import annotations

import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

import structlog
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from stream.batching import collect
from stream.checkpoint import Checkpoint
from stream.config import BatchSettings, KafkaSettings
from stream.dlq import Record
from stream.errors import BrokerError, ClientResetError, FeatureStoreError, OffsetsError, TransientError
from stream.metrics import STALL_S, Metrics
from stream.progress import ProgressMarks

Process = Callable[[Sequence[Message]], list[Record]]

log = structlog.get_logger("fraudstream.stage")

SHUTDOWN_GRACE_S = 30.0
# The loop has not turned for this long: a client call blocks beyond every timeout. The
# process exits (70) for its supervisor to restart it — the last resort behind the resets.
WATCHDOG_S = 120.0
MAX_RESETS = 5
LAG_CHECK_S = 5.0


@dataclass
class StageStats:
    batches: int = 0
    records: int = 0
    outputs: int = 0
    retries: int = 0
    started: float = field(default_factory=time.monotonic)
    first_record: float | None = None  # clock time of the first consumed batch
    last_commit: float | None = None  # clock time of the last committed batch

    @property
    def active_s(self) -> float:
        """First record consumed → last batch committed: the basis of throughput figures."""
        if self.first_record is None or self.last_commit is None:
            return 0.0
        return self.last_commit - self.first_record


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not getrusage: on Linux its ru_maxrss
    starts from the parent's peak after fork, so a child of a big process looks big."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass  # not Linux: fall back below
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StopFlag:
    """Set by SIGTERM/SIGINT (or by hand); the loop checks it between batches. Once set by a
    signal, the process exits within `grace_s` even if a client call does not return."""

    def __init__(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        self._event = threading.Event()
        self.grace_s = grace_s

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def install(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("stop_requested", signal=signal.Signals(signum).name)
            if not self._event.is_set():
                threading.Thread(target=self._deadline, name="shutdown-deadline", daemon=True).start()
            self._event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _deadline(self) -> None:
        time.sleep(self.grace_s)
        log.error("shutdown_forced", after_s=self.grace_s, reason="a client call did not return; the open transaction is aborted")
        os._exit(0)


class StageLoop:
    """Runs one stage until stopped."""

    def __init__(
        self,
        name: str,
        kafka: KafkaSettings,
        group_id: str,
        topic: str,
        transactional_id: str,
        batch: BatchSettings,
        process: Process,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        tick: Callable[[], None] | None = None,
        dlq_topic: str | None = None,
        marks: ProgressMarks | None = None,
    ) -> None:
        self.name = name
        self.topic = topic
        self.batch = batch
        self.kafka = kafka
        self.group_id = group_id
        self.transactional_id = transactional_id
        self.wait_s = batch.wait_s(kafka.exactly_once)
        self.process = process
        self.clock = clock
        self.stats = StageStats()
        self.metrics = metrics or Metrics(name)
        self.tick = tick
        self.dlq_topic = dlq_topic
        self.marks = marks
        self.log = log.bind(stage=name, topic=topic, group=group_id)
        self.stop: StopFlag = StopFlag()
        self._offsets_error: OffsetsError | None = None
        self._resets_since_commit = 0
        self._lag_checked = 0.0
        self._warned: dict[str, float] = {}
        self._build()

    def _build(self) -> None:
        """Consumer, producer and checkpoint; the transactional producer's init fences any
        earlier producer of this id and settles its open transaction."""
        kafka, eos = self.kafka, self.kafka.exactly_once
        # The transactional id doubles as the static member id: both name this replica.
        conf = kafka.consumer_config(self.group_id, client_id=f"fraudstream-{self.name}",
                                     instance_id=self.transactional_id, offset_reset="error")  # fmt: skip
        self.consumer = Consumer(conf)
        tid = self.transactional_id if eos else None
        self.producer = Producer(kafka.producer_config(tid, client_id=f"fraudstream-{self.name}"))
        self.checkpoint = Checkpoint(self.consumer, self.producer, eos, commit_interval_s=kafka.commit_interval_ms / 1000,
                                     stopping=lambda: bool(self.stop), on_commit=self._committed)  # fmt: skip

    def _subscribe(self) -> None:
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        placed = self._place(consumer, parts)
        consumer.incremental_assign(placed)
        self.log.info("partitions_assigned", partitions=[p.partition for p in parts])
        self.metrics.ready = True

    def _place(self, consumer: Consumer, parts: list[TopicPartition]) -> list[TopicPartition]:
        """Where each assigned partition starts (see the module docstring)."""
        try:
            committed = consumer.committed(parts, timeout=10)
        except KafkaException as exc:
            self.log.warning("committed_offsets_unknown", error=str(exc))
            return parts  # librdkafka fetches them itself; offset_reset=error guards a missing one
        fresh = [tp for tp in committed if tp.offset < 0]
        if not fresh:
            return committed
        try:
            marks = self.marks.marks(fresh) if self.marks is not None else {}
        except FeatureStoreError as exc:
            # Cannot tell a first start from lost offsets: do neither until it can be told.
            self._offsets_error = OffsetsError(
                f"{self.group_id}: no committed offset on {self._names(fresh)} and the progress marks cannot be read "
                f"({exc}); not starting those partitions blind"
            )
            return committed
        lost = [tp for tp in fresh if (tp.topic, tp.partition) in marks]
        lost_keys = {(tp.topic, tp.partition) for tp in lost}
        if lost:
            where = ", ".join(f"{tp.topic}:{tp.partition} (marked {marks[(tp.topic, tp.partition)]})" for tp in lost)
            self._offsets_error = OffsetsError(
                f"group {self.group_id} committed on {where} before, but the broker has no committed offset for it now: "
                f"offsets were lost; not reprocessing from the start. To resume from the mark, set it, e.g. "
                f"kafka-consumer-groups.sh --bootstrap-server {self.kafka.bootstrap} --group {self.group_id} "
                f"--reset-offsets --to-offset N --topic TOPIC:PARTITION --execute"
            )
        start = OFFSET_BEGINNING if self.kafka.first_start == "earliest" else OFFSET_END
        first = [tp for tp in fresh if (tp.topic, tp.partition) not in lost_keys]
        for tp in first:
            tp.offset = start
        if first:
            self.log.info("first_start", partitions=[tp.partition for tp in first], at=self.kafka.first_start)
        return committed

    @staticmethod
    def _names(parts: Sequence[TopicPartition]) -> str:
        return ", ".join(f"{tp.topic}:{tp.partition}" for tp in parts)

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        # Batches are committed or aborted before the next consume call, and revocation
        # only happens inside that call: no transaction is open here. At-least-once
        # batches still in flight are settled so the next owner does not repeat them.
        self.log.info("partitions_revoked", partitions=[p.partition for p in parts])
        self._settle(self.checkpoint.timeout_s)
        self._after_revoke(consumer, parts)

    def _on_lost(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
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

    def _committed(self, offsets: list[TopicPartition]) -> None:
        """After the checkpoint committed `offsets`: progress and marks."""
        now = self.clock()
        self.stats.last_commit = now
        self.metrics.progressed(time.monotonic())
        self._resets_since_commit = 0
        if self.marks is not None:
            try:
                self.marks.record(offsets)
            except FeatureStoreError as exc:
                self._warn("progress_mark_failed", str(exc))

    def _warn(self, event: str, reason: str, every_s: float = 10.0) -> None:
        """A warning at most every `every_s` per event (an outage repeats them per batch)."""
        now = time.monotonic()
        if now - self._warned.get(event, -1e18) >= every_s:
            self._warned[event] = now
            self.log.warning(event, reason=reason)

    def _settle(self, wait_s: float) -> None:
        try:
            self.checkpoint.settle(wait_s)
        except BrokerError as exc:
            self.metrics.retries.inc()
            self.log.warning("batch_retry", error=type(exc).__name__, reason=str(exc))

    def run(self, stop: StopFlag, max_idle_s: float | None = None) -> StageStats:
        """Consume until `stop` is set (or, with max_idle_s, until the topic stays quiet that long)."""
        self.stop = stop
        self._subscribe()
        threading.Thread(target=self._watchdog, name="loop-watchdog", daemon=True).start()
        backoff = 0.1
        last_data = self.clock()
        try:
            while not stop:
                self.metrics.last_loop = time.monotonic()
                if self.tick is not None:
                    self.tick()
                try:
                    msgs = collect(self._consume, self.batch.max_rows, self.wait_s, self.clock)
                except KafkaException as exc:
                    self._fail(BrokerError(f"consume failed: {exc}"), backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if self._offsets_error is not None:
                    raise self._offsets_error
                if not msgs:
                    self._settle(0.0)
                    self._check_idle_lag()
                    if max_idle_s is not None and self.clock() - last_data > max_idle_s:
                        break
                    continue
                last_data = self.clock()
                if self.stats.first_record is None:
                    self.stats.first_record = last_data
                try:
                    t0 = self.clock()
                    outputs = self.process(msgs)
                    t1 = self.clock()
                    self.checkpoint.commit(msgs, outputs)
                    self.metrics.step_seconds.labels("process").observe(t1 - t0)
                    self.metrics.step_seconds.labels("commit").observe(self.clock() - t1)
                except TransientError as exc:
                    if not isinstance(exc, BrokerError):
                        try:
                            self.checkpoint.abort(msgs)
                        except ClientResetError as reset:
                            exc = reset
                    self._fail(exc, backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                self.stats.batches += 1
                self.stats.records += len(msgs)
                self.stats.outputs += len(outputs)
                self._observe(msgs, outputs)
        finally:
            self.close()
        return self.stats

    def _watchdog(self) -> None:
        while not self.stop:
            time.sleep(5.0)
            stuck = time.monotonic() - self.metrics.last_loop
            if stuck > WATCHDOG_S and not self.stop:
                self.log.error("loop_stuck_exiting", stuck_s=round(stuck), exit_code=70)
                os._exit(70)

    def _fail(self, exc: TransientError, backoff: float) -> None:
        """A failed batch (already aborted and rewound where that was possible): back off,
        and rebuild the clients when its outcome is unknown or nothing has progressed for STALL_S."""
        self.stats.retries += 1
        self.metrics.retries.inc()
        self.metrics.waiting(time.monotonic())
        self.log.warning("batch_retry", error=type(exc).__name__, reason=str(exc)[:500], backoff_s=backoff)
        if isinstance(exc, ClientResetError) or self.metrics.stalled(time.monotonic()):
            self._reset(exc)
        else:
            time.sleep(backoff)

    def _check_idle_lag(self) -> None:
        """Idle with records waiting on owned partitions: a stall unless it clears (checked every LAG_CHECK_S)."""
        now = time.monotonic()
        if now - self._lag_checked < LAG_CHECK_S:
            return
        self._lag_checked = now
        try:
            owned = self.consumer.assignment()
            positions = self.consumer.position(owned) if owned else []
            waiting = 0
            for tp in positions:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=2)
                if tp.offset >= 0 and high > tp.offset:
                    waiting += high - tp.offset
        except KafkaException:
            return  # the broker is away: the failing batches say so
        if waiting == 0:
            self.metrics.progressed(now)
            return
        self.metrics.waiting(now)
        if self.metrics.stalled(now):
            self._reset(BrokerError(f"{waiting} records waiting on owned partitions, none consumed for {STALL_S:.0f} s"))

    def _reset(self, exc: TransientError) -> None:
        """Rebuild consumer and producer and rejoin; resume from the committed offsets."""
        self._resets_since_commit += 1
        self.metrics.resets.inc()
        if self._resets_since_commit > MAX_RESETS:
            self.log.error("stage_giving_up", resets=MAX_RESETS, reason=str(exc)[:500])
            raise exc
        self.log.error("clients_reset", reason=str(exc)[:500], attempt=self._resets_since_commit)
        self._close_clients()
        time.sleep(min(2.0**self._resets_since_commit, 30.0))
        self.metrics.waiting(time.monotonic(), restart=True)
        while not self.stop:
            self.metrics.last_loop = time.monotonic()
            try:
                self._build()
                break
            except (KafkaException, ClientResetError) as err:
                self.log.warning("clients_rebuild_failed", error=str(err)[:300])
                time.sleep(2.0)
        if not self.stop:
            self._subscribe()

    def _close_clients(self) -> None:
        try:
            self.producer.purge(in_queue=True, in_flight=True)
        except (KafkaException, RuntimeError) as exc:
            self.log.warning("producer_purge_failed", error=str(exc)[:200])
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            self.log.warning("consumer_close_failed", error=str(exc)[:200])
        self.metrics.ready = False

    def _observe(self, msgs: Sequence[Message], outputs: list[Record]) -> None:
        m = self.metrics
        m.records.inc(len(msgs))
        m.batch_size.observe(len(msgs))
        for topic, _key, _value, headers in outputs:
            if topic == self.dlq_topic:
                m.dlq.labels(dict(headers).get("error.class", b"?").decode()).inc()
        last: dict[int, int] = {}
        for msg in msgs:
            last[msg.partition() or 0] = max(last.get(msg.partition() or 0, -1), msg.offset() or 0)
        for partition, offset in last.items():
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            except KafkaException:
                continue
            m.lag.labels(str(partition)).set(max(high - offset - 1, 0))

    def _consume(self, num: int, timeout: float) -> list[Message]:
        msgs = self.consumer.consume(num, timeout)
        good = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
            elif err.code() == KafkaError._AUTO_OFFSET_RESET and self._offsets_error is None:
                # offset_reset=error: the position is out of range or missing. Never jump.
                self._offsets_error = OffsetsError(
                    f"{m.topic()}:{m.partition()} of group {self.group_id}: {err.str()}; not jumping to another offset"
                )
            else:
                self._warn("consume_error", str(err))
        return good

    def close(self) -> None:
        """Settle, flush and close; a fenced or unreachable client is logged, never raised (exit stays clean)."""
        self._settle(10.0)
        try:
            self.producer.flush(10)
        except KafkaException as exc:
            self.log.warning("flush_failed_at_close", error=str(exc)[:300])
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            self.log.warning("consumer_close_failed", error=str(exc)[:300])
        peak_mb = peak_rss_mb()
        self.log.info("stage_stopped", batches=self.stats.batches, records=self.stats.records,
                      active_s=round(self.stats.active_s, 3), peak_rss_mb=round(peak_mb, 1))  # fmt: skip
