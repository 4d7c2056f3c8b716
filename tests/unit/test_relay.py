"""bench.relay, the latency floor's stand-in stages, in the stages' loop over the in-memory
broker: one bare decision per transaction, the chosen share through the buffer topic, and
each decision timed from its transaction's own append, not from the buffer record's."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.relay import INGEST_HEADER, first, second, through_buffer
from models.decision import Route
from stream.config import ScorerSettings, Topics, load_settings
from stream.deadletter import headers_dict
from stream.kafka.codec import Codec
from stream.kafka.lifecycle import StopFlag
from stream.kafka.loop import Process, StageLoop
from stream.testing import MemoryBroker, sample_transaction

CODEC = Codec()
TOPICS = Topics()
APPENDED_MS = 1_700_000_000_000  # the transactions' append time (the buffer records get another one)


def _run(broker: MemoryBroker, topic: str, process: Process, exactly_once: bool) -> None:
    kafka = load_settings(environ={} if exactly_once else {"FRAUDSTREAM_KAFKA__PROCESSING": "at_least_once"}).kafka
    make_producer, _made = broker.producer_factory()
    loop = StageLoop("relay", kafka, f"g-{topic}", topic, f"g-{topic}-0", ScorerSettings().batch, process,
                     consumer_factory=broker.consumer_factory(), producer_factory=make_producer)  # fmt: skip
    loop.run(StopFlag(), max_idle_s=0.3)


def test_a_stable_share_of_ids_goes_through_the_buffer() -> None:
    ids = [f"tx-{i}" for i in range(10_000)]
    assert not any(through_buffer(t, 0.0) for t in ids)
    assert all(through_buffer(t, 1.0) for t in ids)
    chosen = [t for t in ids if through_buffer(t, 0.18)]
    assert 0.16 < len(chosen) / len(ids) < 0.20
    assert chosen == [t for t in ids if through_buffer(t, 0.18)]  # the same ids every time
    assert set(chosen) <= {t for t in ids if through_buffer(t, 0.5)}  # a larger share adds ids


@pytest.mark.parametrize("exactly_once", [True, False])
def test_every_transaction_gets_one_bare_decision_timed_from_its_own_append(exactly_once: bool) -> None:
    broker = MemoryBroker()
    txs = [sample_transaction(i) for i in range(60)]
    for tx in txs:
        broker.append(TOPICS.transactions, CODEC.encode("Transaction", tx), tx["customer_id"].encode(), timestamp_ms=APPENDED_MS)
    broker.append(TOPICS.transactions, b"\x00not avro", b"k", timestamp_ms=APPENDED_MS)
    _run(broker, TOPICS.transactions, first(CODEC, TOPICS, 0.3, lambda: APPENDED_MS + 5), exactly_once)
    buffered = broker.records(TOPICS.ambiguous)
    assert buffered and all(m.timestamp()[1] != APPENDED_MS for m in buffered)
    assert {headers_dict(m.headers())[INGEST_HEADER] for m in buffered} == {str(APPENDED_MS)}
    _run(broker, TOPICS.ambiguous, second(CODEC, TOPICS, lambda: APPENDED_MS + 12), exactly_once)

    decisions = [CODEC.decode_decision(m.value()) for m in broker.records(TOPICS.decisions)]
    assert Counter(d.transaction_id for d in decisions) == Counter(tx["transaction_id"] for tx in txs)
    via = {tx["transaction_id"] for tx in txs if through_buffer(tx["transaction_id"], 0.3)}
    assert {d.transaction_id for d in decisions if d.route is Route.DEEP} == via
    assert {(d.route, d.latency_ms) for d in decisions} == {(Route.XGB_APPROVE, 5.0), (Route.DEEP, 12.0)}
    assert all(d.features == () and d.reasons == () for d in decisions)
    assert [headers_dict(m.headers())["stage"] for m in broker.records(TOPICS.dlq)] == ["relay"]
