"""The pipelined at-least-once checkpoint, driven through in-memory stand-ins for the
Kafka client: offsets follow acknowledged outputs, in batch order; a failed delivery
rewinds to the oldest uncommitted batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from stream.errors import BrokerError, RewindError
from stream.kafka.checkpoint import Checkpoint

Ack = Callable[[KafkaError | None, Message], None]


class FakeProducer:
    def __init__(self) -> None:
        self.queued: list[Ack] = []

    def produce(self, topic: str, *, on_delivery: Ack | None = None, **_kw: Any) -> None:
        assert on_delivery is not None
        self.queued.append(on_delivery)

    def ack(self, index: int, err: KafkaError | None = None) -> None:
        self.queued[index](err, Message(topic="out"))

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        for i in range(len(self.queued)):
            self.ack(i)
        self.queued.clear()
        return 0


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[tuple[list[tuple[int, int]], bool]] = []
        self.seeks: list[tuple[int, int]] = []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append((sorted((tp.partition, tp.offset) for tp in offsets), asynchronous))

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))


def batch(partition: int, *offsets: int) -> list[Message]:
    return [Message(topic="in", partition=partition, offset=o, value=b"x") for o in offsets]


def record() -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    return ("out", b"k", b"v", [])


@pytest.fixture
def parts() -> tuple[Checkpoint, FakeProducer, FakeConsumer]:
    producer, consumer = FakeProducer(), FakeConsumer()
    return Checkpoint(consumer, producer, exactly_once=False), producer, consumer  # type: ignore[arg-type]


def test_offsets_are_committed_only_for_the_acknowledged_prefix_of_batches(parts: Any) -> None:
    cp, producer, consumer = parts
    cp.commit(batch(0, 10, 11), [record(), record()])  # outputs 0, 1
    cp.commit(batch(1, 5), [record()])  # output 2
    producer.ack(2)  # the later batch first: nothing may be committed yet
    assert cp.settle() == 2 and consumer.commits == []
    producer.ack(0)
    assert cp.settle() == 2 and consumer.commits == []
    producer.ack(1)
    assert cp.settle() == 0
    assert consumer.commits == [([(0, 12), (1, 6)], True)]


def test_a_failed_delivery_rewinds_to_the_oldest_uncommitted_batch(parts: Any) -> None:
    cp, producer, consumer = parts
    cp.commit(batch(0, 10, 11), [record()])
    cp.commit(batch(0, 12), [record()])
    producer.ack(1, KafkaError(KafkaError._MSG_TIMED_OUT))
    with pytest.raises(BrokerError, match="delivery failed"):
        cp.commit(batch(0, 13), [record()])
    assert consumer.seeks == [(0, 10)] and consumer.commits == []
    assert cp.settle() == 0  # forgotten: the rewound batches come back from the consumer


def test_draining_waits_for_deliveries_and_commits_synchronously(parts: Any) -> None:
    cp, _producer, consumer = parts
    cp.commit(batch(2, 7), [record(), record()])
    assert cp.settle(wait_s=5.0) == 0
    assert consumer.commits == [([(2, 8)], False)]


def test_a_batch_without_outputs_commits_at_once(parts: Any) -> None:
    cp, _producer, consumer = parts
    cp.commit(batch(3, 1, 2), [])
    assert consumer.commits == [([(3, 3)], True)]


def test_offsets_are_committed_at_most_once_per_interval_and_always_when_draining() -> None:
    now = [0.0]
    producer, consumer = FakeProducer(), FakeConsumer()
    cp = Checkpoint(consumer, producer, exactly_once=False, commit_interval_s=0.1, clock=lambda: now[0])  # type: ignore[arg-type]
    cp.commit(batch(0, 1), [])
    cp.commit(batch(0, 2), [])
    assert consumer.commits == []  # acknowledged, waiting for the interval
    now[0] = 0.1
    cp.commit(batch(0, 3), [])
    assert consumer.commits == [([(0, 4)], True)]
    cp.commit(batch(1, 9), [])
    cp.settle(wait_s=1.0)
    assert consumer.commits[-1] == ([(1, 10)], False)


class SeeklessConsumer(FakeConsumer):
    """Seek fails (as librdkafka's does on a partition it cannot position)."""

    def __init__(self, owned: list[int]) -> None:
        super().__init__()
        self.owned = owned

    def seek(self, tp: TopicPartition) -> None:
        raise KafkaException(KafkaError(KafkaError._STATE))

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("in", p) for p in self.owned]


def test_a_rewind_that_fails_on_an_owned_partition_stops_rather_than_skips() -> None:
    owned = Checkpoint(SeeklessConsumer(owned=[0]), FakeProducer(), exactly_once=False)  # type: ignore[arg-type]
    with pytest.raises(RewindError, match=r"in\[0\] to offset 10"):
        owned.abort(batch(0, 10, 11))
    # Revoked meanwhile: the new owner resumes from the committed offset, nothing to stop for.
    revoked = Checkpoint(SeeklessConsumer(owned=[1]), FakeProducer(), exactly_once=False)  # type: ignore[arg-type]
    revoked.abort(batch(0, 10, 11))
