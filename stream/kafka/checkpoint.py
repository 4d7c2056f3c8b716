"""The commit sequence of a micro-batch, in one place.

Exactly-once (default), per batch:
    1. begin the Kafka transaction;
    2. send the consumer's next offsets for the batch to the transaction;
    3. produce every output of the batch (decisions, buffer records, DLQ records);
    4. commit the transaction — outputs and offsets become visible together.
Steps 1-4 of a full batch (a backlog) run on a thread of their own (`begin`) while the stage
works on the next batch, whose own steps start only once they ended (`finish`): one
transaction at a time, in order. A batch that is not full is committed before the stage
goes on: it is keeping up, and its records are best served by a commit now.
On any failure before 4 the transaction is aborted and the consumer rewound to the batch's
first offsets — and the next batch's, which is dropped — (to the committed ones when the
group refused the offsets), so both are processed again and nothing is lost. A rewind that
fails on a partition still owned stops the stage (RewindError); the restart resumes from
the committed offsets.

Errors are read as librdkafka classifies them. A retriable error (a timeout while the
broker is away) repeats the same call — for commit_transaction that resumes the commit
in progress, as librdkafka asks; aborting instead would conflict with it. An abortable
error aborts and rewinds. A fatal one (the producer fenced), a commit that cannot be
resumed within `resume_s`, or an abort that cannot complete leaves the batch's outcome
unknown: ClientResetError, on which the stage rebuilds its clients and resumes from the
committed offsets, which say whether the batch committed.

At-least-once: the batches are pipelined (`stream.kafka.pipeline`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import cast

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from stream.errors import BrokerError, ClientResetError
from stream.kafka.calls import Flight, bounded, next_offsets, produce
from stream.kafka.pipeline import Pipeline
from stream.records import Output

log = structlog.get_logger("fraudstream.checkpoint")

# How long one transactional call is repeated while librdkafka calls its error retriable.
RESUME_S = 60.0
TIMEOUT_S = 10.0  # per transactional call
CALL_MARGIN_S = 5.0
MEMBERSHIP_LOST = {KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.FENCED_INSTANCE_ID}

Done = Callable[[float], None]


class _Batch:
    """An exactly-once batch whose steps 1-4 run in the background."""

    def __init__(self, messages: Sequence[Message], offsets: list[TopicPartition], done: Done, flight: Flight) -> None:
        self.messages, self.offsets, self.done, self.flight = messages, offsets, done, flight


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
        self.consumer, self.producer, self.exactly_once, self.timeout_s = consumer, producer, exactly_once, timeout_s
        self.clock = clock
        self.pipeline = Pipeline(consumer, producer, commit_interval_s, clock, self._pipeline_committed)
        self.resume_s, self.stopping, self.on_commit = resume_s, stopping, on_commit
        self.last_commit_at = clock()
        self._flight: _Batch | None = None  # exactly-once: the batch whose steps 1-4 are running
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
        """`begin` in the foreground: the batch committed (or handed to the pipeline) when this returns."""
        self.begin(messages, outputs, background=False)

    def begin(
        self, messages: Sequence[Message], outputs: Sequence[Output], done: Done = lambda _s: None, background: bool = True
    ) -> None:
        """Exactly-once: `finish` the batch before, then steps 1-4 for this one — in the background
        (`done` gets the seconds they took once they succeeded, in `finish`), or with `background`
        False here and now, finished; at-least-once: hand it to the pipeline (`done` gets the
        seconds its outputs took to produce)."""
        if not self.exactly_once:
            started = self.clock()
            self.pipeline.add(messages, outputs)
            done(self.clock() - started)
            return
        self.finish(messages)
        try:
            metadata = self.consumer.consumer_group_metadata()
        except KafkaException as exc:  # (no group membership to commit with): decided again
            self._rewind(messages)
            raise BrokerError(f"consumer_group_metadata failed: {exc}") from exc
        offsets = next_offsets(messages)
        flight = Flight(lambda: self._transact(offsets, metadata, outputs), self.clock, background)
        self._flight = _Batch(messages, offsets, done, flight)
        if not background:
            self.finish()

    def finish(self, also: Sequence[Message] = ()) -> None:
        """Wait for the batch in flight. Committed: `on_commit`, its `done`. Aborted: it and `also`
        rewound, BrokerError; outcome unknown: ClientResetError."""
        batch = self._settled()
        if batch is None:
            return
        self._flight = None
        error = batch.flight.error
        if isinstance(error, BrokerError) and not isinstance(error, ClientResetError):  # aborted: decided again
            self._rewind([*batch.messages, *also])
            cause = error.__cause__
            err = cause.args[0] if isinstance(cause, KafkaException) and cause.args else None
            if isinstance(err, KafkaError) and err.code() in MEMBERSHIP_LOST:  # this member's generation is gone
                self._to_committed()
        raise cast(BaseException, error)

    def _settled(self) -> _Batch | None:
        """Wait for the batch in flight; a committed one is done and forgotten, a failed one kept."""
        batch = self._flight
        if batch is None or batch.flight.wait() is not None:
            return batch
        self._flight = None
        self.last_commit_at = batch.flight.ended
        self.on_commit(batch.offsets)
        batch.done(batch.flight.ended - batch.flight.started)
        return None

    def committing(self) -> bool:
        """Is a batch's commit running (exactly-once)?"""
        return self._flight is not None and self._flight.flight.running()

    def _pipeline_committed(self, offsets: list[TopicPartition]) -> None:
        self.last_commit_at = self.clock()
        self.on_commit(offsets)

    def drop(self) -> None:
        """Wait for the batch in flight; forget it (new clients read its outcome in the committed offsets)."""
        if self._settled() is not None:
            self._flight = None

    def _transact(self, offsets: list[TopicPartition], metadata: object, outputs: Sequence[Output]) -> None:
        """Steps 1-4 (on the flight's thread); an abortable failure aborts the transaction here."""
        step = "begin_transaction"
        try:
            self.producer.begin_transaction()  # 1
            # Offsets before outputs: they touch only the group's offsets partition, so the
            # output partitions hold an open transaction — which keeps read_committed readers
            # of the whole partition waiting, the other stage's decisions included — for the
            # produce and the commit alone.
            step = "send_offsets_to_transaction"
            limit = self.timeout_s + CALL_MARGIN_S
            send = lambda: self.producer.send_offsets_to_transaction(offsets, metadata, self.timeout_s)  # noqa: E731
            self._repeat(step, lambda: bounded(step, send, limit))  # 2
            step = "produce"
            for topic, key, value, headers in outputs:  # 3
                produce(self.producer, topic, value, key, headers)
            step = "commit_transaction"
            self._repeat(step, lambda: self.producer.commit_transaction(self.timeout_s))  # 4
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
            self._abort_transaction()
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

    def settle(self, wait_s: float = 0.0, messages: Sequence[Message] = ()) -> int:
        """Exactly-once: wait for the batch in flight (one that failed is left to `finish`, which
        rewinds the batch after it too). At-least-once: `Pipeline.settle`. Returns the batches
        still in flight."""
        if self.exactly_once:
            self._settled()
            return 0
        return self.pipeline.settle(wait_s, messages)

    def _rewind(self, messages: Sequence[Message]) -> None:
        self.pipeline.rewind(messages)

    def abort(self, messages: Sequence[Message]) -> None:
        """Abort the open transaction (if any) and rewind to the batch's first offsets
        (at-least-once: to the oldest batch in flight); a batch still committing is waited for
        first. ClientResetError when the abort cannot complete (the producer is then unusable)."""
        try:
            self.finish(also=messages)
        except ClientResetError:
            raise
        except BrokerError:
            return  # the batch before failed: both rewound
        if self.exactly_once:
            self._abort_transaction()
        # A partition revoked meanwhile is resumed by its new owner from the committed offset.
        self._rewind(messages)

    def _abort_transaction(self) -> None:
        try:
            self._repeat("abort_transaction", lambda: self.producer.abort_transaction(self.timeout_s))
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            # _STATE: no transaction was open (it failed before or at begin): nothing to abort.
            if err is None or err.code() != KafkaError._STATE:
                raise ClientResetError(f"abort_transaction failed: {exc}") from exc
