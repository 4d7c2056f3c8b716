"""Stage 1, stage 2 and the stage loop in process, against the fakes in `stream.testing`:
no broker, no Redis. Every input gets exactly one output; degradation never approves by omission."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import Counter

import pytest
from confluent_kafka import Message

from models.decision import Level, Outcome, Route, Thresholds
from models.sequence import SEQ_WIDTH, SEQUENCE_VERSION
from stream.config import DeepSettings, FallbackSettings, ScorerSettings, Topics, load_settings
from stream.deadletter import headers_dict
from stream.errors import FeatureStoreError
from stream.kafka.codec import Codec
from stream.kafka.lifecycle import StopFlag
from stream.kafka.loop import StageLoop
from stream.records import BatchResult, Decision, Output
from stream.stages.scorer import Scorer
from stream.testing import FixedVersions, MemoryBroker, MemoryFeatureStore, ProtocolViolation, sample_transaction, tiny_bundle

CODEC = Codec()
TOPICS = Topics()
# Amounts in minor units: the tiny model scores 10 units low, 950 high, 600 in between.
LOW, MID, HIGH = 1_000, 60_000, 95_000


def messages(amounts: list[int], start: int = 0, partition: int = 0) -> list[Message]:
    out = []
    for i, amount in enumerate(amounts, start):
        tx = sample_transaction(i, amount=amount)
        value = CODEC.encode("Transaction", tx)
        out.append(Message(topic=TOPICS.transactions, partition=partition, offset=i, key=tx["customer_id"].encode(),
                           value=value, timestamp=(1, tx["event_time"])))  # fmt: skip
    return out


def scorer(store: MemoryFeatureStore | None = None, versions: FixedVersions | None = None, deep_up: bool = True) -> Scorer:
    return Scorer(CODEC, store or MemoryFeatureStore(), versions or FixedVersions(tiny_bundle()), TOPICS, ScorerSettings(),
                  FallbackSettings(), lambda: deep_up)  # fmt: skip


def decisions(result: BatchResult) -> list[Decision]:
    return [CODEC.decode_decision(o.value) for o in result.outputs if o.topic == TOPICS.decisions]


def test_stage_one_decides_the_clear_cases_and_buffers_the_band() -> None:
    result = scorer().process(messages([LOW, HIGH, MID, LOW, HIGH, MID]))
    by_topic = Counter(o.topic for o in result.outputs)
    assert by_topic == {TOPICS.decisions: 4, TOPICS.ambiguous: 2}
    routes = [d.route for d in decisions(result)]
    assert sorted(routes) == [Route.XGB_APPROVE, Route.XGB_APPROVE, Route.XGB_BLOCK, Route.XGB_BLOCK]
    assert result.level == Level.NORMAL and set(result.step_seconds) == {"features", "xgboost"}
    assert sorted(d.route for d in result.decided) == sorted(d.route.name for d in decisions(result))
    assert result.model_version == "t1"


def test_with_the_deep_stage_down_the_band_is_decided_here() -> None:
    result = scorer(deep_up=False).process(messages([MID, MID, LOW]))
    ds = decisions(result)
    assert len(ds) == 3 and result.level == Level.XGB_FALLBACK
    assert [d.route for d in ds].count(Route.XGB_FALLBACK) == 2


def test_redis_down_gives_rules_or_the_safe_default_and_no_stale_step_timings() -> None:
    store = MemoryFeatureStore()
    store.down = True
    s = scorer(store)
    for _ in range(FallbackSettings().breaker_failures):
        s.process(messages([LOW]))
    result = s.process(messages([LOW, 250_000]))  # the breaker is open now: features not even tried
    ds = decisions(result)
    assert {d.route for d in ds} <= {Route.RULES, Route.SAFE_DEFAULT}
    assert all(d.outcome != Outcome.APPROVE for d in ds if d.route == Route.SAFE_DEFAULT)
    assert "features" not in result.step_seconds and "xgboost" not in result.step_seconds
    assert result.level == Level.SAFE_DEFAULT


def test_a_state_write_that_fails_after_scoring_has_the_batch_decided_again_by_rules() -> None:
    """The write is acknowledged after XGBoost ran: when it fails, no XGBoost decision of the
    batch is published (its features are not in Redis) — each record gets one rules decision."""
    store = MemoryFeatureStore()
    s = scorer(store)
    store.write_fails = True
    result = s.process(messages([LOW, MID, 250_000]))
    ds = decisions(result)
    assert len(result.outputs) == len(ds) == 3 and store.acknowledged == 1
    assert {d.route for d in ds} <= {Route.RULES, Route.SAFE_DEFAULT}
    assert all(o.topic == TOPICS.decisions for o in result.outputs)  # none of the band buffered
    assert s.features.breaker.failures == 1
    store.write_fails = False
    again = s.process(messages([LOW], start=10))
    assert [d.route for d in decisions(again)] == [Route.XGB_APPROVE] and s.features.breaker.failures == 0


def test_a_broken_deploy_decides_by_rules() -> None:
    versions = FixedVersions(tiny_bundle())
    versions.promote("v-broken")
    result = scorer(versions=versions).process(messages([LOW, 250_000]))
    ds = decisions(result)
    assert [d.route for d in ds] == [Route.RULES, Route.RULES]
    assert ds[1].outcome == Outcome.REVIEW and result.level == Level.RULES


def test_unreadable_records_and_repeated_ids_are_dead_lettered_with_their_class() -> None:
    good = messages([LOW])
    junk = Message(topic=TOPICS.transactions, partition=0, offset=9, value=b"\xff\x00junk", timestamp=(1, 0))
    s = scorer()
    s.process(good)
    again = messages([LOW], start=0, partition=1)  # the same transaction id from another record
    result = s.process([junk, *again])
    classes = [headers_dict(o.headers)["error.class"] for o in result.outputs if o.topic == TOPICS.dlq]
    assert sorted(classes) == ["DecodeError", "DuplicateTransaction"]
    assert not decisions(result)


def test_stage_two_decides_every_buffer_record_once_and_falls_back_for_an_unknown_version() -> None:
    from stream.stages.deep import DeepWorker

    bundle = tiny_bundle(deep=True)
    buffered = [o for o in scorer(versions=FixedVersions(bundle)).process(messages([MID] * 5)).outputs
                if o.topic == TOPICS.ambiguous]  # fmt: skip
    assert len(buffered) == 5
    msgs = [Message(topic=TOPICS.ambiguous, partition=0, offset=i, key=o.key, value=o.value, timestamp=(1, 0))
            for i, o in enumerate(buffered)]  # fmt: skip
    worker = DeepWorker(CODEC, FixedVersions(bundle), TOPICS, DeepSettings(device="cpu"))
    ds = decisions(worker.process(msgs))
    assert len(ds) == 5 and {d.route for d in ds} == {Route.DEEP}
    other = DeepWorker(CODEC, FixedVersions(tiny_bundle("t2", deep=True)), TOPICS, DeepSettings(device="cpu"))
    fallback = decisions(other.process(msgs))  # t1 is not among its versions
    assert len(fallback) == 5 and {d.route for d in fallback} == {Route.XGB_FALLBACK}
    assert all(d.outcome == Outcome.REVIEW for d in fallback if d.score >= 0.5)
    carried = [CODEC.decode_buffer([m])[0][0][0] for m in msgs]
    assert {(len(r.sequence), r.sequence_version) for r in carried} == {(SEQ_WIDTH, SEQUENCE_VERSION)}
    assert {(d.sequence, d.sequence_version) for d in ds} == {(r.sequence, r.sequence_version) for r in carried}
    # A record written before buffer records carried the sequence: decided from its XGBoost score.
    bare = dataclasses.replace(carried[0], sequence=(), sequence_version="")
    old = Message(topic=TOPICS.ambiguous, partition=0, offset=9, key=b"k", value=CODEC.encode_buffer(bare), timestamp=(1, 0))
    assert [d.route for d in decisions(worker.process([old]))] == [Route.XGB_FALLBACK]


def _loop(broker: MemoryBroker, process: object, exactly_once: bool = True, rows: int = 500) -> tuple[StageLoop, list[object]]:
    env = {} if exactly_once else {"FRAUDSTREAM_KAFKA__PROCESSING": "at_least_once"}
    kafka = load_settings(environ=env).kafka
    make_producer, made = broker.producer_factory()
    batch = ScorerSettings().batch.model_copy(update={"max_rows": rows})
    loop = StageLoop("scorer", kafka, "g", TOPICS.transactions, "g-0", batch, process,  # type: ignore[arg-type]
                     consumer_factory=broker.consumer_factory(), producer_factory=make_producer)  # fmt: skip
    return loop, made  # type: ignore[return-value]


def _fill(broker: MemoryBroker, n: int) -> None:
    for m in messages([LOW, MID, HIGH] * (n // 3)):
        broker.append(TOPICS.transactions, m.value(), m.key(), partition=0)


@pytest.mark.parametrize("exactly_once", [True, False])
def test_the_loop_decides_each_transaction_once_and_commits_its_offsets(exactly_once: bool) -> None:
    broker = MemoryBroker()
    _fill(broker, 30)
    loop, made = _loop(broker, scorer(deep_up=False).process, exactly_once)
    stats = loop.run(StopFlag(), max_idle_s=0.3)
    ids = Counter(CODEC.decode_decision(m.value()).transaction_id for m in broker.records(TOPICS.decisions))
    assert len(ids) == 30 and set(ids.values()) == {1}
    assert broker.offsets[("g", TOPICS.transactions, 0)] == 30 and stats.records == 30
    if exactly_once:
        calls = made[0].calls  # type: ignore[attr-defined]
        assert calls[:3] == ["init_transactions", "begin_transaction", "send_offsets_to_transaction"]
        assert calls[-1] == "commit_transaction"


def test_a_failed_commit_aborts_rewinds_and_redoes_the_batch_without_a_duplicate() -> None:
    broker = MemoryBroker()
    _fill(broker, 9)
    loop, made = _loop(broker, scorer(deep_up=False).process)
    made[0].fail("commit_transaction")  # type: ignore[attr-defined]  # abortable, not retriable
    loop.run(StopFlag(), max_idle_s=0.3)
    ids = Counter(CODEC.decode_decision(m.value()).transaction_id for m in broker.records(TOPICS.decisions))
    assert len(ids) == 9 and set(ids.values()) == {1}
    assert "abort_transaction" in made[0].calls and loop.stats.retries == 1  # type: ignore[attr-defined]


def test_the_next_batch_is_processed_while_the_last_one_commits_and_begins_only_after_it() -> None:
    """Steps 1-4 of a batch run while the stage works on the next: each later batch's processing
    starts before the commit before it (slowed to 0.3 s here) ended, its own commit after it
    (the recording producer also refuses a begin inside an open transaction)."""
    broker = MemoryBroker()
    _fill(broker, 30)
    inner, started, commits = scorer(deep_up=False), [], []

    def process(msgs: list[Message]) -> BatchResult:
        started.append(time.monotonic())
        return inner.process(msgs)

    loop, made = _loop(broker, process, rows=10)
    producer = made[0]
    commit = producer.commit_transaction  # type: ignore[attr-defined]

    def slow_commit(timeout: float = 0) -> None:
        began = time.monotonic()
        time.sleep(0.3)
        commit(timeout)
        commits.append((began, time.monotonic()))

    producer.commit_transaction = slow_commit  # type: ignore[attr-defined]
    stats = loop.run(StopFlag(), max_idle_s=0.5)
    ids = Counter(CODEC.decode_decision(m.value()).transaction_id for m in broker.records(TOPICS.decisions))
    assert len(ids) == 30 and set(ids.values()) == {1} and stats.batches == 3 and len(commits) == 3
    assert all(nxt < ended for (_, ended), nxt in zip(commits, started[1:], strict=False))  # overlapped
    assert all(ended <= began for (_, ended), (began, _) in itertools.pairwise(commits))  # in order
    assert broker.offsets[("g", TOPICS.transactions, 0)] == 30


def test_a_commit_failing_while_the_next_batch_is_processed_redoes_both_without_a_duplicate() -> None:
    broker = MemoryBroker()
    _fill(broker, 30)
    loop, made = _loop(broker, scorer(deep_up=False).process, rows=10)
    made[0].fail("send_offsets_to_transaction")  # type: ignore[attr-defined]  # the first batch's
    stats = loop.run(StopFlag(), max_idle_s=0.3)
    ids = Counter(CODEC.decode_decision(m.value()).transaction_id for m in broker.records(TOPICS.decisions))
    assert len(ids) == 30 and set(ids.values()) == {1} and stats.retries == 1
    assert broker.offsets[("g", TOPICS.transactions, 0)] == 30 and stats.records == 30


def test_a_transient_stage_error_aborts_and_the_batch_is_processed_again() -> None:
    broker = MemoryBroker()
    _fill(broker, 6)
    inner = scorer(deep_up=False)
    failed = [False]

    def flaky(msgs: list[Message]) -> BatchResult:
        if not failed[0]:
            failed[0] = True
            raise FeatureStoreError("redis timed out")
        return inner.process(msgs)

    loop, _made = _loop(broker, flaky)
    loop.run(StopFlag(), max_idle_s=0.3)
    assert len(broker.records(TOPICS.decisions)) == 6 and loop.stats.retries == 1


def test_the_recording_producer_refuses_a_produce_outside_a_transaction() -> None:
    broker = MemoryBroker()
    make, _made = broker.producer_factory()
    producer = make({"transactional.id": "t"})
    with pytest.raises(ProtocolViolation):
        producer.produce("out", value=b"v")
    producer.begin_transaction()
    with pytest.raises(ProtocolViolation, match="produce while begun"):
        producer.produce("out", value=b"v")  # offsets first: the checkpoint's order


def test_thresholds_route_through_the_core_in_both_stages() -> None:
    # A band that covers everything: every transaction goes to the deep stage.
    wide = tiny_bundle(thresholds=Thresholds(0.0, 1.01, 0.5, 0.9, 0.5))
    result = scorer(versions=FixedVersions(wide)).process(messages([LOW, HIGH]))
    assert [o.topic for o in result.outputs] == [TOPICS.ambiguous, TOPICS.ambiguous]
    assert all(isinstance(o, Output) for o in result.outputs)


def test_a_fatal_consumer_error_rebuilds_the_clients_and_the_stage_goes_on() -> None:
    """A static member fenced by the broker (seen after a broker of a cluster died) leaves a
    consumer that can never fetch again: the loop builds new clients rather than idle forever."""
    from confluent_kafka import KafkaError

    broker = MemoryBroker()
    _fill(broker, 9)
    broker.consume_errors.append(KafkaError(KafkaError._FATAL, "static consumer fenced"))  # as consume() reports it
    loop, made = _loop(broker, scorer(deep_up=False).process)
    loop.run(StopFlag(), max_idle_s=0.5)
    assert len(made) == 2  # a second producer (and consumer) after the reset
    ids = Counter(CODEC.decode_decision(m.value()).transaction_id for m in broker.records(TOPICS.decisions))
    assert len(ids) == 9 and set(ids.values()) == {1}
