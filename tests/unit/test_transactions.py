"""The exactly-once checkpoint against a scripted transactional producer: errors are read
as librdkafka classifies them — a timed-out commit is resumed (never aborted: that would
conflict with the commit in progress), an abortable error aborts and rewinds, and a fatal
error or an outcome that cannot be known asks the stage to rebuild its clients."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from stream.errors import BrokerError, ClientResetError
from stream.kafka.checkpoint import Checkpoint
from stream.records import Output


def timed_out() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._TIMED_OUT, "retry call to resume", retriable=True))


def abortable() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._FENCED, "member fenced", txn_requires_abort=True))


def fatal() -> KafkaException:
    return KafkaException(KafkaError(KafkaError._FENCED, "producer fenced", fatal=True))


class ScriptedProducer:
    """Records the transactional calls; `fail[name]` lists the exceptions its next calls raise."""

    def __init__(self, **fail: list[KafkaException]) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def _call(self, name: str) -> None:
        self.calls.append(name)
        queue = self.fail.get(name) or []
        if queue:
            raise queue.pop(0)

    def init_transactions(self, _timeout: float) -> None:
        self._call("init")

    def begin_transaction(self) -> None:
        self._call("begin")

    def send_offsets_to_transaction(self, _offsets: Any, _meta: Any, _timeout: float) -> None:
        self._call("send_offsets")

    def produce(self, _topic: str, **_kw: Any) -> None:
        self.calls.append("produce")

    def commit_transaction(self, _timeout: float) -> None:
        self._call("commit")

    def abort_transaction(self, _timeout: float) -> None:
        self._call("abort")


class Consumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[int, int]] = []

    def consumer_group_metadata(self) -> object:
        return object()

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("in", 0)]


def messages() -> list[Message]:
    return [Message(topic="in", partition=0, offset=o, value=b"x") for o in (4, 5)]


def checkpoint(producer: ScriptedProducer, consumer: Consumer, committed: list[Any]) -> Checkpoint:
    return Checkpoint(consumer, producer, exactly_once=True, resume_s=5.0, on_commit=committed.append)  # type: ignore[arg-type]


def test_a_commit_that_timed_out_is_resumed_not_aborted() -> None:
    producer, consumer, committed = ScriptedProducer(commit=[timed_out(), timed_out()]), Consumer(), []
    checkpoint(producer, consumer, committed).commit(messages(), [Output("out", b"k", b"v", [])])
    assert producer.calls == ["init", "begin", "send_offsets", "produce", "commit", "commit", "commit"]
    assert consumer.seeks == [] and [[(tp.partition, tp.offset) for tp in c] for c in committed] == [[(0, 6)]]


def test_a_commit_that_cannot_be_resumed_in_time_leaves_the_outcome_to_the_broker() -> None:
    producer, consumer = ScriptedProducer(commit=[timed_out()] * 100), Consumer()
    cp = Checkpoint(consumer, producer, exactly_once=True, resume_s=0.0)  # type: ignore[arg-type]
    with pytest.raises(ClientResetError, match="could not be resumed"):
        cp.commit(messages(), [])
    assert "abort" not in producer.calls and consumer.seeks == []


def test_an_abortable_error_aborts_and_rewinds() -> None:
    producer, consumer, committed = ScriptedProducer(send_offsets=[abortable()]), Consumer(), []
    with pytest.raises(BrokerError, match="send_offsets_to_transaction") as info:
        checkpoint(producer, consumer, committed).commit(messages(), [])
    assert not isinstance(info.value, ClientResetError)
    assert producer.calls == ["init", "begin", "send_offsets", "abort"]
    assert consumer.seeks == [(0, 4)] and committed == []


def test_a_fenced_producer_asks_for_new_clients_without_touching_the_transaction() -> None:
    producer, consumer = ScriptedProducer(commit=[fatal()]), Consumer()
    with pytest.raises(ClientResetError, match="fatally"):
        checkpoint(producer, consumer, []).commit(messages(), [])
    assert "abort" not in producer.calls


def test_a_producer_that_cannot_begin_or_abort_asks_for_new_clients() -> None:
    with pytest.raises(ClientResetError, match="begin_transaction"):
        checkpoint(ScriptedProducer(begin=[KafkaException(KafkaError(KafkaError._STATE))]), Consumer(), []).commit(messages(), [])
    stuck = ScriptedProducer(send_offsets=[abortable()], abort=[KafkaException(KafkaError(KafkaError._TRANSPORT))])
    with pytest.raises(ClientResetError, match="abort_transaction"):
        checkpoint(stuck, Consumer(), []).commit(messages(), [])


def test_init_is_repeated_while_the_broker_is_away() -> None:
    producer = ScriptedProducer(init=[timed_out(), timed_out()])
    checkpoint(producer, Consumer(), [])
    assert producer.calls == ["init", "init", "init"]


def test_a_transactional_call_that_never_returns_is_given_up() -> None:
    import threading
    import time

    from stream.kafka.calls import bounded

    forever = threading.Event()
    began = time.monotonic()

    def hang() -> None:
        forever.wait()

    with pytest.raises(ClientResetError, match="did not return within 0 s"):
        bounded("send_offsets_to_transaction", hang, 0.2)
    assert time.monotonic() - began < 5
    forever.set()
    with pytest.raises(KafkaException):
        bounded("send_offsets_to_transaction", lambda: (_ for _ in ()).throw(timed_out()), 5.0)


def test_a_send_offsets_that_never_returns_gives_the_batch_up_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    """The label consumer hung > 4 min inside send_offsets_to_transaction after a broker restart
    (librdkafka issues 5456/5511): the call is now bounded, and the stage rebuilds its clients."""
    import threading
    import time

    import stream.kafka.checkpoint as cp

    monkeypatch.setattr(cp, "CALL_MARGIN_S", 0.0)
    never = threading.Event()

    class Hanging(ScriptedProducer):
        def send_offsets_to_transaction(self, _offsets: Any, _meta: Any, _timeout: float) -> None:
            self.calls.append("send_offsets")
            never.wait()

    producer, committed = Hanging(), []
    checkpoint_ = Checkpoint(Consumer(), producer, exactly_once=True, timeout_s=0.3, on_commit=committed.append)  # type: ignore[arg-type]
    began = time.monotonic()
    with pytest.raises(ClientResetError, match="send_offsets_to_transaction did not return"):
        checkpoint_.commit(messages(), [Output("out", b"k", b"v", [])])
    assert time.monotonic() - began < 5 and committed == []
    assert producer.calls == ["init", "begin", "send_offsets"]  # nothing produced, nothing committed
    never.set()


@pytest.mark.parametrize("code", [KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.FENCED_INSTANCE_ID])
def test_offsets_refused_for_a_lost_membership_rewind_to_the_committed_offsets(code: int) -> None:
    """A scorer paused past its session kept positions on partitions a peer had since decided;
    rewound only to its own batch, it repeated the peer's decisions once it rejoined (974 in a
    chaos run). A refused membership now puts every held partition back at the committed offset."""

    class Behind(Consumer):
        def committed(self, parts: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
            return [TopicPartition(tp.topic, tp.partition, 40) for tp in parts]  # a peer committed past the batch

    refused = KafkaException(KafkaError(code, "Failed to commit offsets", txn_requires_abort=True))
    producer, consumer = ScriptedProducer(send_offsets=[refused]), Behind()
    with pytest.raises(BrokerError, match="send_offsets_to_transaction"):
        checkpoint(producer, consumer, []).commit(messages(), [Output("out", b"k", b"v", [])])
    assert producer.calls == ["init", "begin", "send_offsets", "abort"]
    assert consumer.seeks == [(0, 4), (0, 40)]  # the batch's first offset, then the committed one


def test_a_batch_whose_commit_failed_in_the_background_is_rewound_with_the_batch_after_it() -> None:
    """The stage processes batch 2 while batch 1 commits; batch 1's transaction is aborted:
    starting batch 2's commit raises, nothing of batch 2 is sent, and both are rewound (every
    partition to its first offset of the two). A settle in between (a revoke) only waits."""
    producer, consumer, committed = ScriptedProducer(send_offsets=[abortable()]), Consumer(), []
    cp = checkpoint(producer, consumer, committed)
    cp.begin(messages(), [Output("out", b"k", b"v", [])])
    cp.settle(5.0)
    assert consumer.seeks == [] and producer.calls == ["init", "begin", "send_offsets", "abort"]
    second = [Message(topic="in", partition=p, offset=o, value=b"x") for p, o in ((0, 6), (0, 7), (1, 3))]
    with pytest.raises(BrokerError, match="send_offsets_to_transaction"):
        cp.begin(second, [Output("out", b"k", b"v", [])])
    assert sorted(consumer.seeks) == [(0, 4), (1, 3)] and committed == []
    assert producer.calls == ["init", "begin", "send_offsets", "abort"]  # batch 2 never began
    cp.commit(second, [])  # the checkpoint is usable again
    assert [[(tp.partition, tp.offset) for tp in c] for c in committed] == [[(0, 8), (1, 4)]]
