"""At-least-once, pipelined: a batch's outputs are produced and the stage moves on; its offsets
are committed (asynchronously, at most every commit_interval_s) once every output of it and
of the batches before it is acknowledged. A failed delivery rewinds to the oldest
uncommitted batch (at-least-once allows the duplicates). Draining (idle, shutdown, revoke)
waits for deliveries and commits synchronously. The checkpoint (`stream.kafka.checkpoint`)
hands at-least-once batches here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from stream.errors import BrokerError, RewindError
from stream.kafka.calls import first_offsets, next_offsets, produce
from stream.records import Output


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


class Pipeline:
    """The at-least-once batches in flight and the offsets acknowledged but not yet committed."""

    def __init__(
        self,
        consumer: Consumer,
        producer: Producer,
        commit_interval_s: float,
        clock: Callable[[], float],
        on_commit: Callable[[list[TopicPartition]], None],
    ) -> None:
        self.consumer, self.producer, self.clock, self.on_commit = consumer, producer, clock, on_commit
        self._in_flight: deque[_InFlight] = deque()  # oldest first
        self._acked: dict[tuple[str, int], TopicPartition] = {}
        self.commit_interval_s = commit_interval_s
        self._committed_at = clock()

    def add(self, messages: Sequence[Message], outputs: Sequence[Output]) -> None:
        """Produce a batch's outputs and move on; its offsets are committed once they are acknowledged."""
        batch = _InFlight(messages, len(outputs))
        self._in_flight.append(batch)
        for topic, key, value, headers in outputs:
            produce(self.producer, topic, value, key, headers, on_delivery=batch.delivered)
        self.settle(wait_s=0.0, messages=messages)

    def settle(self, wait_s: float = 0.0, messages: Sequence[Message] = ()) -> int:
        """Serve delivery reports (waiting up to wait_s for all of them), then commit the offsets
        of the acknowledged prefix of batches — synchronously when waiting. Returns the batches
        still in flight. BrokerError, after rewinding to the oldest uncommitted batch (and
        `messages`), when a delivery failed."""
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
            self.rewind(messages)
            raise BrokerError(f"output delivery failed: {failed}")
        if wait_s > 0 and self._in_flight:
            pending = len(self._in_flight)
            self.rewind(messages)
            raise BrokerError(f"{pending} batches not acknowledged within {wait_s:.0f} s")
        return len(self._in_flight)

    def rewind(self, messages: Sequence[Message]) -> None:
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
