"""In-memory Kafka for unit tests: a broker of topics and committed offsets, a consumer,
and a producer that records its calls and checks the transactional order.

The producer enforces what `stream.kafka.checkpoint` promises: per batch
begin → send_offsets → produce… → commit (or abort), nothing produced outside a
transaction. A broken order raises ProtocolViolation (an AssertionError, so a test
fails). Records become visible, and offsets committed, only at commit, as with a
read_committed reader. `fail(call, error)` makes the next such call raise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition


class ProtocolViolation(AssertionError):
    """A producer call out of the transactional order."""


class MemoryBroker:
    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self.topics: dict[str, list[list[Message]]] = {}
        self.offsets: dict[tuple[str, str, int], int] = {}  # (group, topic, partition) -> next offset
        self.consume_errors: list[KafkaError] = []  # the next consume calls each return one as a message

    def log(self, topic: str) -> list[list[Message]]:
        return self.topics.setdefault(topic, [[] for _ in range(self.partitions)])

    def append(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int = 1_767_225_600_000,
    ) -> Message:
        parts = self.log(topic)
        p = partition if partition is not None else (hash(key) % self.partitions if key is not None else 0)
        msg = Message(
            topic=topic,
            partition=p,
            offset=len(parts[p]),
            key=key,
            value=value,
            headers=cast(Any, headers),
            timestamp=(1, timestamp_ms),
        )
        parts[p].append(msg)
        return msg

    def records(self, topic: str) -> list[Message]:
        """Every committed record of `topic`, partition by partition."""
        return [m for part in self.log(topic) for m in part]

    def consumer_factory(self) -> Callable[[dict[str, Any]], Consumer]:
        return lambda conf: cast(Consumer, FakeConsumer(self, conf))

    def producer_factory(self) -> tuple[Callable[[dict[str, Any]], Producer], list[RecordingProducer]]:
        """A factory and the list of producers it made (the newest last)."""
        made: list[RecordingProducer] = []

        def make(conf: dict[str, Any]) -> Producer:
            made.append(RecordingProducer(self, conf))
            return cast(Producer, made[-1])

        return make, made


class FakeConsumer:
    def __init__(self, broker: MemoryBroker, conf: dict[str, Any]) -> None:
        self.broker, self.group = broker, str(conf["group.id"])
        self.positions: dict[tuple[str, int], int] = {}
        self.topics: list[str] = []
        self.on_assign: Callable[[Consumer, list[TopicPartition]], None] | None = None
        self.closed = False
        self.fatal: KafkaError | None = None

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None, on_lost: Any = None) -> None:
        self.topics, self.on_assign, self.positions = topics, on_assign, {}

    def incremental_assign(self, parts: list[TopicPartition]) -> None:
        for tp in parts:
            end = len(self.broker.log(tp.topic)[tp.partition])
            at = {OFFSET_BEGINNING: 0, OFFSET_END: end}.get(tp.offset, tp.offset)
            self.positions[(tp.topic, tp.partition)] = at if at >= 0 else 0

    def committed(self, parts: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.broker.offsets.get((self.group, tp.topic, tp.partition), -1001))
            for tp in parts
        ]

    def consume(self, num: int = 1, timeout: float = 0) -> list[Message]:
        if self.closed:
            raise RuntimeError("consumer closed")
        if self.broker.consume_errors and self.fatal is None:
            err = self.broker.consume_errors.pop(0)
            self.fatal = err if err.fatal() or err.code() == KafkaError._FATAL else None
            return [Message(topic=self.topics[0] if self.topics else "", error=err)]
        if self.fatal is not None:  # a fatal consumer never fetches again
            time.sleep(min(timeout, 0.01))
            return [Message(topic=self.topics[0] if self.topics else "", error=self.fatal)]
        if not self.positions and self.topics and self.on_assign is not None:
            parts = [TopicPartition(t, p) for t in self.topics for p in range(self.broker.partitions)]
            self.on_assign(cast(Consumer, self), parts)
        out: list[Message] = []
        for (topic, p), at in sorted(self.positions.items()):
            batch = self.broker.log(topic)[p][at : at + num - len(out)]
            out += batch
            self.positions[(topic, p)] = at + len(batch)
        if not out:
            time.sleep(min(timeout, 0.01))  # as a real consumer waits for records
        return out

    def seek(self, tp: TopicPartition) -> None:
        self.positions[(tp.topic, tp.partition)] = tp.offset

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.positions]

    def position(self, parts: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.positions[(tp.topic, tp.partition)]) for tp in parts]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = 0, cached: bool = False) -> tuple[int, int]:
        return 0, len(self.broker.log(tp.topic)[tp.partition])

    def consumer_group_metadata(self) -> str:
        return self.group

    def commit(self, offsets: Sequence[TopicPartition] = (), asynchronous: bool = False) -> None:
        for tp in offsets:
            self.broker.offsets[(self.group, tp.topic, tp.partition)] = tp.offset

    def close(self) -> None:
        self.closed = True


class RecordingProducer:
    def __init__(self, broker: MemoryBroker, conf: dict[str, Any]) -> None:
        self.broker, self.conf = broker, conf
        self.calls: list[str] = []
        self._state = "idle"  # idle | begun | offsets | producing
        self._pending: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self._offsets: tuple[str, list[TopicPartition]] | None = None
        self._failures: dict[str, KafkaException] = {}

    def fail(self, call: str, code: int = KafkaError._TIMED_OUT, *, retriable: bool = False, abortable: bool = True) -> None:
        """The next `call` raises a KafkaException of `code`."""
        self._failures[call] = KafkaException(
            KafkaError(code, f"injected {call} failure", retriable=retriable, txn_requires_abort=abortable)
        )

    def _call(self, name: str, allowed_from: tuple[str, ...]) -> None:
        self.calls.append(name)
        if self._state not in allowed_from:
            raise ProtocolViolation(f"{name} while {self._state}: calls so far {self.calls}")
        failure = self._failures.pop(name, None)
        if failure is not None:
            raise failure

    def init_transactions(self, timeout: float = 0) -> None:
        self.calls.append("init_transactions")

    def begin_transaction(self) -> None:
        self._call("begin_transaction", ("idle",))
        self._state = "begun"

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: Any, timeout: float = 0) -> None:
        self._call("send_offsets_to_transaction", ("begun",))
        self._offsets, self._state = (str(metadata), offsets), "offsets"

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Any = None,
        timestamp: int = 0,
        on_delivery: Any = None,
    ) -> None:
        if "transactional.id" in self.conf:
            self._call("produce", ("offsets", "producing"))
            self._state = "producing"
        else:
            self.calls.append("produce")
        self._pending.append((topic, value, key, headers))
        if "transactional.id" not in self.conf:
            self.broker.append(topic, value, key, headers=headers)
            self._pending.clear()
            if on_delivery is not None:
                on_delivery(None, Message(topic=topic))

    def commit_transaction(self, timeout: float = 0) -> None:
        self._call("commit_transaction", ("offsets", "producing"))
        for topic, value, key, headers in self._pending:
            self.broker.append(topic, value, key, headers=headers)
        if self._offsets is not None:
            group, offsets = self._offsets
            for tp in offsets:
                self.broker.offsets[(group, tp.topic, tp.partition)] = tp.offset
        self._pending, self._offsets, self._state = [], None, "idle"

    def abort_transaction(self, timeout: float = 0) -> None:
        if self._state == "idle":  # as librdkafka answers: nothing is open
            self.calls.append("abort_transaction")
            raise KafkaException(KafkaError(KafkaError._STATE, "Operation not valid in state Ready"))
        self._call("abort_transaction", ("begun", "offsets", "producing"))
        self._pending, self._offsets, self._state = [], None, "idle"

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True) -> None:
        self._pending, self._state = [], "idle"
