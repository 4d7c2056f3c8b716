"""The commit sequence of a micro-batch, in one place.

Exactly-once (default), per batch:
    1. begin the Kafka transaction;
    2. send the consumer's next offsets for the batch to the transaction;
    3. produce every output of the batch (decisions, buffer records, DLQ records);
    4. commit the transaction — outputs and offsets become visible together.
On any failure before 4 the transaction is aborted and the consumer rewound to the batch's
first offsets (to the committed ones when the group refused the offsets), so the batch is
processed again and nothing is lost. A rewind that fails on a partition still owned stops the
stage (RewindError); the restart resumes from the committed offsets.

Errors are read as librdkafka classifies them. A retriable error (a timeout while the
broker is away) repeats the same call — for commit_transaction that resumes the commit
in progress, as librdkafka asks; aborting instead would conflict with it. An abortable
error aborts and rewinds. A fatal one (the producer fenced), a commit that cannot be
resumed within `resume_s`, or an abort that cannot complete leaves the batch's outcome
unknown: ClientResetError, on which the stage rebuilds its clients and resumes from the
committed offsets, which say whether the batch committed.

At-least-once, pipelined: a batch's outputs are produced and the loop moves on; its offsets
are committed (asynchronously) once every output of it and of the batches before it is
acknowledged. A failed delivery rewinds to the oldest uncommitted batch (at-least-once allows
the duplicates). Draining (idle, shutdown, revoke) waits for deliveries and commits synchronously.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from stream.errors import BrokerError, ClientResetError, RewindError
from stream.kafka.calls import bounded, first_offsets, next_offsets, produce
from stream.records import Output

log = structlog.get_logger("fraudstream.checkpoint")

# How long one transactional call is repeated while librdkafka calls its error retriable.
RESUME_S = 60.0
TIMEOUT_S = 10.0  # per transactional call
CALL_MARGIN_S = 5.0
MEMBERSHIP_LOST = {KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.FENCED_INSTANCE_ID}


class _InFlight:
    """An at-least-once batch whose outputs are not all acknowledged yet."""

    def __init__(self, messages: Sequence[Message], outputs: int) -> None:
        self.next = next_offsets(messages)
        self.first = first_offsets(messages)
        self.remaining = outputs
        self.error: KafkaError | None = None

    def delivered(self, err: KafkaError | None, _msg: Message) -> None:
        self.remaining -= 1
        if err is not None and self.error is None:
            self.error = err


class Checkpoint:
    """Commits one batch's outputs and offsets together."""

    def __init__(
        self,
        consumer: Consumer,
        producer: Producer,
        exactly_once: bool,
        timeout_s: float = TIMEOUT_S,
        commit_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        resume_s: float = RESUME_S,
        stopping: Callable[[], bool] = lambda: False,
        on_commit: Callable[[list[TopicPartition]], None] = lambda _offsets: None,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.exactly_once = exactly_once
        self.timeout_s = timeout_s
        # At-least-once only: batches in flight (oldest first) and acknowledged offsets not
        # yet committed; those are committed at most every commit_interval_s (and on settle).
        self._in_flight: deque[_InFlight] = deque()
        self._acked: dict[tuple[str, int], TopicPartition] = {}
        self.commit_interval_s = commit_interval_s
        self.clock = clock
        self._committed_at = clock()
        self.resume_s = resume_s
        self.stopping = stopping
        self.on_commit = on_commit
        if exactly_once:
            self._repeat("init_transactions", lambda: producer.init_transactions(timeout_s))

    def _repeat(self, what: str, call: Callable[[], object]) -> None:
        """`call`, repeated while it fails with an error librdkafka calls retriable (for at most
        resume_s, and not once a stop is requested)."""
        deadline = self.clock() + self.resume_s
        while True:
            try:
                call()
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is None or err.fatal() or err.txn_requires_abort() or not err.retriable():
                    raise
                if self.stopping() or self.clock() >= deadline:
                    raise
                log.warning("transaction_call_retry", call=what, error=err.name())
                time.sleep(0.2)

    def commit(self, messages: Sequence[Message], outputs: Sequence[Output]) -> None:
        """Steps 1-4 above for one batch (exactly-once), or hand the batch to the pipeline
        (at-least-once); BrokerError after rewinding when it fails, ClientResetError when
        its outcome is unknown."""
        if not self.exactly_once:
            self._pipeline(messages, outputs)
            return
        offsets = next_offsets(messages)
        step = "begin_transaction"
        try:
            self.producer.begin_transaction()  # 1
            # Offsets before outputs: they touch only the group's offsets partition, so the
            # output partitions hold an open transaction — which keeps read_committed readers
            # of the whole partition waiting, the other stage's decisions included — for the
            # produce and the commit alone.
            step = "send_offsets_to_transaction"
            metadata = self.consumer.consumer_group_metadata()
            limit = self.timeout_s + CALL_MARGIN_S
            send = lambda: self.producer.send_offsets_to_transaction(offsets, metadata, self.timeout_s)  # noqa: E731
            self._repeat(step, lambda: bounded(step, send, limit))  # 2
            step = "produce"
            for topic, key, value, headers in outputs:  # 3
                produce(self.producer, topic, value, key, headers)
            step = "commit_transaction"
            self._repeat(step, lambda: self.producer.commit_transaction(self.timeout_s))  # 4
            self.on_commit(offsets)
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is not None and err.fatal():
                raise ClientResetError(f"{step}: producer failed fatally: {exc}") from exc
            if step == "begin_transaction":
                # A local call: it fails only when the producer's transaction state is wrong.
                raise ClientResetError(f"{step} refused: {exc}") from exc
            if step == "commit_transaction" and err is not None and not err.txn_requires_abort():
                # Neither committed nor known to be aborted (the resume ran out of time).
                raise ClientResetError(f"{step} could not be resumed: {exc}") from exc
            self.abort(messages)
            if err is not None and err.code() in MEMBERSHIP_LOST:  # this member's generation is gone
                self._to_committed()
            raise BrokerError(f"batch commit failed at {step}: {exc}") from exc

    def _to_committed(self) -> None:
        """Held partitions back to the committed offsets: a member paused past its session kept stale
        positions and, rewound only to its batch, repeated a peer's decisions (974 in a chaos run)."""
        try:
            held = self.consumer.assignment()
            committed = self.consumer.committed(held, timeout=self.timeout_s) if held else []
        except KafkaException as exc:
            log.warning("committed_offsets_unknown", error=str(exc)[:300])
            return
        for tp in committed:
            if tp.offset >= 0:
                with contextlib.suppress(KafkaException):  # not held any more: its owner resumes there
                    self.consumer.seek(tp)

    def _pipeline(self, messages: Sequence[Message], outputs: Sequence[Output]) -> None:
        batch = _InFlight(messages, len(outputs))
        self._in_flight.append(batch)
        for topic, key, value, headers in outputs:
            produce(self.producer, topic, value, key, headers, on_delivery=batch.delivered)
        self.settle(wait_s=0.0, messages=messages)

    def settle(self, wait_s: float = 0.0, messages: Sequence[Message] = ()) -> int:
        """At-least-once: serve delivery reports (waiting up to wait_s for all of them), then
        commit the offsets of the acknowledged prefix of batches — synchronously when
        waiting. Returns the batches still in flight. BrokerError, after rewinding to the
        oldest uncommitted batch (and `messages`), when a delivery failed."""
        if self.exactly_once:
            return 0
        if wait_s > 0:
            self.producer.flush(wait_s)
        else:
            self.producer.poll(0)
        while self._in_flight and self._in_flight[0].remaining <= 0 and self._in_flight[0].error is None:
            for tp in self._in_flight.popleft().next:
                self._acked[(tp.topic, tp.partition)] = tp
        if self._acked and (wait_s > 0 or self.clock() - self._committed_at >= self.commit_interval_s):
            offsets = list(self._acked.values())
            self._acked.clear()
            self._committed_at = self.clock()
            try:
                if wait_s > 0:
                    self.consumer.commit(offsets=offsets, asynchronous=False)
                else:
                    self.consumer.commit(offsets=offsets, asynchronous=True)
                self.on_commit(offsets)
            except KafkaException as exc:
                # Not committed: the batches are already acknowledged, so a rewind would only
                # duplicate them; the next commit carries later offsets of these partitions.
                if wait_s > 0:
                    raise BrokerError(f"offset commit failed: {exc}") from exc
        failed = next((b.error for b in self._in_flight if b.error is not None), None)
        if failed is not None:
            self._rewind(messages)
            raise BrokerError(f"output delivery failed: {failed}")
        if wait_s > 0 and self._in_flight:
            pending = len(self._in_flight)
            self._rewind(messages)
            raise BrokerError(f"{pending} batches not acknowledged within {wait_s:.0f} s")
        return len(self._in_flight)

    def _rewind(self, messages: Sequence[Message]) -> None:
        """Seek to the first offset of every batch in flight (and of `messages`); forget them."""
        first: dict[tuple[str, int], TopicPartition] = {}
        for tp in [tp for b in self._in_flight for tp in b.first] + first_offsets(messages):
            key = (tp.topic, tp.partition)
            if key not in first or tp.offset < first[key].offset:
                first[key] = tp
        self._in_flight.clear()  # (acknowledged offsets stay: they precede every rewound batch)
        for tp in first.values():
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:
                if self._owns(tp):
                    raise RewindError(f"cannot rewind {tp.topic}[{tp.partition}] to offset {tp.offset}: {exc}") from exc
                # Revoked meanwhile: its new owner resumes from the committed offset.

    def _owns(self, tp: TopicPartition) -> bool:
        try:
            return any(a.topic == tp.topic and a.partition == tp.partition for a in self.consumer.assignment())
        except KafkaException:
            return True  # unknown: assume owned, stopping is the safe side

    def abort(self, messages: Sequence[Message]) -> None:
        """Abort the open transaction (if any) and rewind to the batch's first offsets
        (at-least-once: to the oldest batch in flight). ClientResetError when the abort
        cannot complete (the producer is then unusable)."""
        if self.exactly_once:
            try:
                self._repeat("abort_transaction", lambda: self.producer.abort_transaction(self.timeout_s))
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                # _STATE: no transaction was open (it failed before or at begin): nothing to abort.
                if err is None or err.code() != KafkaError._STATE:
                    raise ClientResetError(f"abort_transaction failed: {exc}") from exc
        # A partition revoked meanwhile is resumed by its new owner from the committed offset.
        self._rewind(messages)
