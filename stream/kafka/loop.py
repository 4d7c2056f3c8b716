"""The consume → process → produce loop shared by the stages: a thin shell.

A stage supplies `process(messages) -> BatchResult`; the loop micro-batches, hands the
outputs to the checkpoint (one Kafka transaction per batch; a full batch's committed while
the next is processed), records each committed batch's metrics and, when a dependency fails
transiently, aborts, rewinds and backs off. SIGTERM/SIGINT stop it between batches.

Healing, without a person: when a batch's outcome is unknown (ClientResetError: a fenced
producer, a commit that could not be resumed), the whole process stood still long enough to
lose its partitions (`stream.kafka.pause`), or the stage has made no progress for STALL_S
while work waits (failing batches, or owned partitions with lag and nothing consumed), the
loop rebuilds its consumer and producer and resumes from the committed offsets. After
MAX_RESETS rebuilds without a committed batch in between it stops with the last error (exit 1)
for its supervisor to restart. /healthz reports the stall from STALL_S on. Partitions and marks:
`stream.kafka.membership`. Clients: `consumer_factory` / `producer_factory` (`stream.testing`'s in unit tests).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from stream.config import BatchSettings, KafkaSettings
from stream.errors import BrokerError, ClientResetError, TransientError
from stream.kafka.batching import collect
from stream.kafka.checkpoint import Checkpoint
from stream.kafka.lag import idle_stall, record_lag
from stream.kafka.lifecycle import StageStats, StopFlag, peak_rss_mb, quietly, start_watchdog
from stream.kafka.membership import Membership
from stream.kafka.pause import PauseWatch
from stream.logs import Throttled
from stream.metrics import STALL_S, Metrics
from stream.records import BatchResult
from stream.state.progress import ProgressMarks

Process = Callable[[Sequence[Message]], BatchResult]
ConsumerFactory = Callable[[dict[str, Any]], Consumer]
ProducerFactory = Callable[[dict[str, Any]], Producer]

log = structlog.get_logger("fraudstream.stage")

MAX_RESETS, LAG_CHECK_S = 5, 5.0


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
        consumer_factory: ConsumerFactory = Consumer,
        producer_factory: ProducerFactory = Producer,
    ) -> None:
        self.name, self.topic, self.batch, self.kafka, self.group_id = name, topic, batch, kafka, group_id
        self.transactional_id, self.process, self.clock = transactional_id, process, clock
        self.tick, self.dlq_topic = tick, dlq_topic
        self.wait_s = batch.wait_s(kafka.exactly_once)
        self.stats, self.metrics = StageStats(), metrics or Metrics(name)
        self.consumer_factory, self.producer_factory = consumer_factory, producer_factory
        self.log = log.bind(stage=name, topic=topic, group=group_id)
        self.stop: StopFlag = StopFlag()
        self._resets_since_commit, self._lag_checked = 0, 0.0
        self._warn = Throttled(self.log)
        self.pause = PauseWatch.for_session(kafka.session_timeout_ms)
        self.group = Membership(group_id, kafka, marks, self.metrics, lambda: self._settle(self.checkpoint.timeout_s), self._warn)
        self._build()

    def _build(self) -> None:
        """Consumer, producer, checkpoint; the producer's init fences this id's earlier producer."""
        kafka, eos = self.kafka, self.kafka.exactly_once
        # The transactional id doubles as the static member id: both name this replica.
        conf = kafka.consumer_config(self.group_id, client_id=f"fraudstream-{self.name}",
                                     instance_id=self.transactional_id, offset_reset="error")  # fmt: skip
        self.consumer = self.consumer_factory(conf)
        tid = self.transactional_id if eos else None
        self.producer = self.producer_factory(kafka.producer_config(tid, client_id=f"fraudstream-{self.name}"))
        self.checkpoint = Checkpoint(self.consumer, self.producer, eos, commit_interval_s=kafka.commit_interval_ms / 1000,
                                     stopping=lambda: bool(self.stop), on_commit=self._committed)  # fmt: skip

    def _committed(self, offsets: list[TopicPartition]) -> None:
        """After the checkpoint committed `offsets`: progress, marks."""
        self.stats.last_commit = self.checkpoint.last_commit_at
        self.metrics.progressed()
        self._resets_since_commit = 0
        self.group.committed(offsets)

    def _settle(self, wait_s: float) -> None:
        try:
            self.checkpoint.settle(wait_s)
        except BrokerError as exc:
            self.metrics.retries.inc()
            self.log.warning("batch_retry", error=type(exc).__name__, reason=str(exc))

    def run(self, stop: StopFlag, max_idle_s: float | None = None) -> StageStats:
        """Consume until `stop` is set (or, with max_idle_s, until the topic stays quiet that long)."""
        self.stop = stop
        self.group.subscribe(self.consumer, self.topic)
        ended = threading.Event()  # the watchdog and the pause ticker end with the loop
        start_watchdog(lambda: not (stop or ended.is_set()), lambda: self.metrics.last_loop)
        self.pause.start(lambda: not (stop or ended.is_set()))
        backoff = 0.1
        last_data = self.clock()
        try:
            while not stop:
                self.metrics.last_loop = time.monotonic()
                if self.tick is not None:
                    self.tick()
                try:
                    msgs = collect(self._consume, self.batch.max_rows, self.wait_s, self.clock, busy=self.checkpoint.committing)
                except (KafkaException, ClientResetError) as exc:
                    self._fail(exc if isinstance(exc, ClientResetError) else BrokerError(f"consume failed: {exc}"), backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if self.group.offsets_error is not None:
                    raise self.group.offsets_error
                if not msgs:
                    if not self._finished(backoff):  # exactly-once: the last batch's commit
                        backoff = min(backoff * 2, 5.0)
                        continue
                    self._settle(0.0)
                    self._check_idle_lag()
                    if max_idle_s is not None and self.clock() - last_data > max_idle_s:
                        break
                    continue
                last_data = self.clock()
                if self.stats.first_record is None:
                    self.stats.first_record = last_data
                backoff = 0.1 if self._one_batch(msgs, backoff) else min(backoff * 2, 5.0)
        finally:
            ended.set()  # (a SIGTERM has already turned the watchdog off: close's calls are bounded)
            self.close()
        return self.stats

    def _one_batch(self, msgs: list[Message], backoff: float) -> bool:
        """Process a batch, start its commit once the one before it committed; False when either failed."""
        try:
            t0 = self.clock()
            result = self.process(msgs)
            process_s = self.clock() - t0
            self.pause.check()
            done = lambda commit_s: self._done(msgs, result, process_s, commit_s)  # noqa: E731
            self.checkpoint.begin(msgs, result.outputs, done, background=len(msgs) >= self.batch.max_rows)
        except TransientError as exc:
            if not isinstance(exc, BrokerError):
                try:
                    self.checkpoint.abort(msgs)
                except ClientResetError as reset:
                    exc = reset
            self._fail(exc, backoff)
            return False
        return True

    def _finished(self, backoff: float) -> bool:
        """The batch in flight committed; False when it failed (backed off, or the clients rebuilt)."""
        try:
            self.checkpoint.finish()
        except TransientError as exc:
            self._fail(exc, backoff)
            return False
        return True

    def _done(self, msgs: list[Message], result: BatchResult, process_s: float, commit_s: float) -> None:
        """A batch committed: its figures."""
        s = self.stats
        s.batches, s.records, s.outputs = s.batches + 1, s.records + len(msgs), s.outputs + len(result.outputs)
        self.metrics.record_batch(result, self.dlq_topic, len(msgs), process_s, commit_s)
        record_lag(self.consumer, self.topic, msgs, self.metrics)

    def _fail(self, exc: TransientError, backoff: float) -> None:
        """A failed batch (aborted and rewound where possible): back off, or rebuild the clients
        when its outcome is unknown or nothing has progressed for STALL_S."""
        self.stats.retries += 1
        self.metrics.retries.inc()
        self.metrics.waiting(time.monotonic())
        self.log.warning("batch_retry", error=type(exc).__name__, reason=str(exc)[:500], backoff_s=backoff)
        if isinstance(exc, ClientResetError) or self.metrics.stalled(time.monotonic()):
            self._reset(exc)
        else:
            time.sleep(backoff)

    def _check_idle_lag(self) -> None:
        """Idle with records waiting on owned partitions: a stall unless it clears (every LAG_CHECK_S)."""
        now = time.monotonic()
        if now - self._lag_checked >= LAG_CHECK_S:
            self._lag_checked, waiting = now, idle_stall(self.consumer, self.metrics, now)
            if waiting:
                self._reset(BrokerError(f"{waiting} records waiting on owned partitions, none consumed for {STALL_S:.0f} s"))

    def _reset(self, exc: TransientError) -> None:
        """Rebuild consumer and producer and rejoin; resume from the committed offsets."""
        self._resets_since_commit += 1
        self.metrics.resets.inc()
        if self._resets_since_commit > MAX_RESETS:
            self.log.error("stage_giving_up", resets=MAX_RESETS, reason=str(exc)[:500])
            raise exc
        self.log.error("clients_reset", reason=str(exc)[:500], attempt=self._resets_since_commit)
        self.checkpoint.drop()
        self._close_clients()
        self.pause.take()  # a stop before the rebuild is answered by it
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
            self.group.subscribe(self.consumer, self.topic)

    def _close_clients(self) -> None:
        quietly(self.log, ("producer_purge_failed", lambda: self.producer.purge(in_queue=True, in_flight=True)),
                ("consumer_close_failed", self.consumer.close))  # fmt: skip
        self.metrics.ready = False

    def _consume(self, num: int, timeout: float) -> list[Message]:
        msgs = self.group.usable(self.consumer.consume(num, timeout))
        self.pause.check()  # a batch taken across a stop is dropped
        return msgs

    def close(self) -> None:
        """Settle, flush and close; a fenced or unreachable client is logged, never raised (exit stays clean)."""
        self._settle(10.0)
        with contextlib.suppress(TransientError):  # a last batch that failed is decided again after a restart
            self.checkpoint.finish()
        self.group.flush_marks()
        quietly(self.log, ("flush_failed_at_close", lambda: self.producer.flush(10)),
                ("consumer_close_failed", self.consumer.close))  # fmt: skip
        s = self.stats
        self.log.info("stage_stopped", batches=s.batches, records=s.records, active_s=round(s.active_s, 3),
                      peak_rss_mb=round(peak_rss_mb(), 1))  # fmt: skip
