"""The consume → process → produce loop shared by the stages: a thin shell.

A stage supplies `process(messages) -> outputs`; the loop micro-batches, hands
the batch to the checkpoint (one Kafka transaction per batch) and, when a
dependency fails transiently, aborts, rewinds and backs off. SIGTERM/SIGINT stop
the loop between batches: the open batch finishes or is aborted, then the
consumer closes — nothing is lost.
"""

from __future__ import annotations

import resource
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

import structlog
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from stream.batching import collect
from stream.checkpoint import Checkpoint
from stream.config import BatchSettings, KafkaSettings
from stream.dlq import Record
from stream.errors import BrokerError, TransientError
from stream.metrics import Metrics

Process = Callable[[Sequence[Message]], list[Record]]

log = structlog.get_logger("fraudstream.stage")


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
    """Set by SIGTERM/SIGINT (or by hand); the loop checks it between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def install(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("stop_requested", signal=signal.Signals(signum).name)
            self._event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


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
    ) -> None:
        self.name = name
        self.topic = topic
        self.batch = batch
        self.wait_s = batch.wait_s(kafka.exactly_once)
        self.process = process
        self.clock = clock
        self.stats = StageStats()
        self.metrics = metrics or Metrics(name)
        self.tick = tick
        self.dlq_topic = dlq_topic
        self.log = log.bind(stage=name, topic=topic, group=group_id)
        # The transactional id doubles as the static member id: both name this replica.
        self.consumer = Consumer(kafka.consumer_config(group_id, client_id=f"fraudstream-{name}", instance_id=transactional_id))
        eos = kafka.exactly_once
        self.producer = Producer(kafka.producer_config(transactional_id if eos else None, client_id=f"fraudstream-{name}"))
        self.checkpoint = Checkpoint(self.consumer, self.producer, eos, commit_interval_s=kafka.commit_interval_ms / 1000)

    def _on_assign(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        self.log.info("partitions_assigned", partitions=[p.partition for p in parts])
        self.metrics.ready = True

    def _on_revoke(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        # Batches are committed or aborted before the next consume call, and revocation
        # only happens inside that call: no transaction is open here. At-least-once
        # batches still in flight are settled so the next owner does not repeat them.
        self.log.info("partitions_revoked", partitions=[p.partition for p in parts])
        self._settle(self.checkpoint.timeout_s)

    def _settle(self, wait_s: float) -> None:
        try:
            self.checkpoint.settle(wait_s)
        except BrokerError as exc:
            self.metrics.retries.inc()
            self.log.warning("batch_retry", error=type(exc).__name__, reason=str(exc))

    def run(self, stop: StopFlag, max_idle_s: float | None = None) -> StageStats:
        """Consume until `stop` is set (or, with max_idle_s, until the topic stays quiet that long)."""
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        backoff = 0.1
        last_data = self.clock()
        try:
            while not stop:
                self.metrics.last_loop = time.monotonic()
                if self.tick is not None:
                    self.tick()
                msgs = collect(self._consume, self.batch.max_rows, self.wait_s, self.clock)
                if not msgs:
                    self._settle(0.0)
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
                    self.stats.last_commit = self.clock()
                    self.metrics.step_seconds.labels("process").observe(t1 - t0)
                    self.metrics.step_seconds.labels("commit").observe(self.clock() - t1)
                except TransientError as exc:
                    if isinstance(exc, BrokerError):
                        self._raise_if_fatal(exc)
                    else:
                        self.checkpoint.abort(msgs)
                    self.stats.retries += 1
                    self.metrics.retries.inc()
                    self.log.warning("batch_retry", error=type(exc).__name__, reason=str(exc), backoff_s=backoff)
                    time.sleep(backoff)
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

    def _raise_if_fatal(self, exc: BrokerError) -> None:
        cause = exc.__cause__
        if isinstance(cause, KafkaException) and cause.args and cause.args[0].fatal():
            # Fenced by a newer instance with our transactional id: this process must stop.
            raise exc

    def _consume(self, num: int, timeout: float) -> list[Message]:
        msgs = self.consumer.consume(num, timeout)
        good = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
            else:
                self.log.warning("consume_error", error=str(err))
        return good

    def close(self) -> None:
        self._settle(10.0)
        self.producer.flush(10)
        self.consumer.close()
        peak_mb = peak_rss_mb()
        self.log.info("stage_stopped", batches=self.stats.batches, records=self.stats.records,
                      active_s=round(self.stats.active_s, 3), peak_rss_mb=round(peak_mb, 1))  # fmt: skip
