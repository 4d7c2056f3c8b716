"""Issue acceptance for the streaming pipeline: one decision per transaction,
parity with offline scoring, crashes, and scale-out — all on the real broker and Redis."""

from __future__ import annotations

import random
import re
import signal
import time
from collections import Counter
from typing import cast

import numpy as np
import pytest
import redis
import torch
from confluent_kafka import Consumer, TopicPartition

from models import xgb as xgbm
from models.artifacts import load_bundle
from models.card import card_from_bytes
from models.features import FeatureEngine
from models.offline import OfflineFeatures
from stream.deadletter import headers_dict
from stream.kafka.codec import Codec
from stream.stages.runtime import DeviceRunner
from stream.testing import sample_transaction
from tests.e2e.conftest import Pipeline, TrainedModel, last_events

pytestmark = pytest.mark.e2e


def _malformed() -> list[bytes | None]:
    good = Codec().encode("Transaction", sample_transaction(1))
    return [
        b"garbage bytes",
        b"\x01" + good[1:],  # wrong magic byte
        b"\x00\x00\x00\x00\x63" + good[5:],  # unknown schema id 99
        good[:15],  # truncated body
        Codec().encode("Transaction", sample_transaction(2, amount=-100)),  # breaks the contract
    ]


def test_every_transaction_gets_exactly_one_decision_matching_offline(pipeline: Pipeline, trained: TrainedModel) -> None:
    events = last_events(trained.sim, 20_000)
    pipeline.start_stages()
    pipeline.produce(events[:10_000])
    pipeline.produce_raw(_malformed())
    pipeline.produce(events[10_000:])

    decisions = pipeline.exactly_once(events)

    dlq = pipeline.read(pipeline.settings.kafka.topics.dlq, 5)
    assert sorted(m.value() or b"" for m in dlq) == sorted(v or b"" for v in _malformed())
    for m in dlq:
        h = headers_dict(m.headers())
        assert h["stage"] == "scorer"
        assert h["source.topic"] == pipeline.settings.kafka.topics.transactions
        assert int(h["source.offset"]) >= 0
        assert h["error.class"] in ("DecodeError", "ValidationError")

    # Parity: the same events scored offline with the in-memory feature backend.
    bundle = load_bundle(trained.root / trained.version)
    th = bundle.thresholds
    delay = int(bundle.manifest["train_config"]["delay_days"])
    rows = OfflineFeatures(FeatureEngine(delay)).rows(events)
    x, seq = rows.x, rows.seq
    margin = xgbm.margins(bundle.booster, x)
    p = xgbm.sigmoid(margin)
    band = (p >= th.approve_below) & (p < th.block_above)
    runner = DeviceRunner(bundle.net, torch.device("cpu"), (64, 256, 1024), 0.7)
    deep_p = np.full(len(events), np.nan, dtype=np.float32)
    deep_p[band] = runner.scores(x[band], margin[band], xgbm.leaves(bundle.booster, x[band]), seq[band])
    by_id = {d["transaction_id"]: d for d in decisions}
    routes = Counter()
    for i, ev in enumerate(events):
        d = by_id[ev["transaction_id"]]
        routes[d["route"]] += 1
        assert d["xgb_score"] == pytest.approx(float(p[i]), abs=1e-6)
        if p[i] < th.approve_below:
            assert (d["route"], d["decision"]) == ("XGB_APPROVE", "APPROVE")
        elif p[i] >= th.block_above:
            assert (d["route"], d["decision"]) == ("XGB_BLOCK", "BLOCK")
        else:
            assert d["route"] == "DEEP"
            assert d["deep_score"] == pytest.approx(float(deep_p[i]), abs=1e-5)
            # online = offline for the card sequence too: stage 1 built it from Redis, bit for bit
            np.testing.assert_array_equal(np.array(d["sequence"], dtype=np.float32), seq[i].reshape(-1))
            expected = "BLOCK" if deep_p[i] >= th.deep_block_above else "REVIEW" if deep_p[i] >= th.review_above else "APPROVE"
            assert d["decision"] == expected
        assert d["model_version"] == trained.version
        if d["decision"] != "APPROVE":
            assert 1 <= len(d["reasons"]) <= 4
    assert routes["DEEP"] > 0 and routes["XGB_APPROVE"] > 0
    codes = pipeline.stop_all()
    assert codes == {"score-0": 0, "deep-0": 0}


def _customer_counts(pipeline: Pipeline, customers: set[str]) -> dict[str, int]:
    client = redis.Redis.from_url(pipeline.settings.redis.url)
    ns = pipeline.settings.redis.namespace
    out = {}
    for c in customers:
        blob = client.get(f"fs:{ns}:{{c:{c}}}:fs2")
        out[c] = int(card_from_bytes(cast(bytes, blob))["seq"][0]) if blob else 0
    client.close()
    return out


def test_sigkill_mid_stream_loses_and_duplicates_nothing(pipeline: Pipeline, trained: TrainedModel) -> None:
    events = last_events(trained.sim, 12_000)
    rng = random.Random(11)
    pipeline.start("score")
    pipeline.start("deep")
    feeder = pipeline.feed(events, 600.0)
    for victim in ["score-0", "deep-0", "score-0", "deep-0", "score-0", "deep-0"]:
        time.sleep(rng.uniform(1.0, 2.5))
        assert pipeline.kill(victim) == -signal.SIGKILL
        pipeline.start(victim.split("-")[0])
    # Every kill landed mid-stream: the feed was still producing after the last one.
    assert feeder.is_alive()
    feeder.join()

    pipeline.exactly_once(events, timeout_s=240)
    per_customer = Counter(e["customer_id"] for e in events)
    assert _customer_counts(pipeline, set(per_customer)) == dict(per_customer)


def test_at_least_once_decides_everything_through_a_crash_and_commits_all_on_shutdown(
    pipeline: Pipeline, trained: TrainedModel
) -> None:
    events = last_events(trained.sim, 6_000)
    alos = {"FRAUDSTREAM_KAFKA__PROCESSING": "at_least_once"}
    pipeline.start_stages(alos, alos)
    feeder = pipeline.feed(events, 1_500.0)
    time.sleep(2.0)
    assert pipeline.kill("score-0") == -signal.SIGKILL  # batches in flight: produced, not committed
    pipeline.start("score", env=alos)
    feeder.join()

    decisions = pipeline.decisions(len(events), timeout_s=240)
    assert {d["transaction_id"] for d in decisions} == {e["transaction_id"] for e in events}
    assert pipeline.stop_all() == {"score-0": 0, "deep-0": 0}
    # A clean stop settles what is in flight: nothing is left for the next start to repeat.
    kafka, topics = pipeline.settings.kafka, pipeline.settings.kafka.topics
    for group, topic in (
        (pipeline.settings.scorer.group_id, topics.transactions),
        (pipeline.settings.deep.group_id, topics.ambiguous),
    ):
        consumer = Consumer(kafka.consumer_config(group))
        parts = [TopicPartition(topic, p) for p in range(4)]
        committed = consumer.committed(parts, timeout=10)
        lag = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] - max(tp.offset, 0) for tp in committed)
        consumer.close()
        assert lag == 0, f"{group} left {lag} records uncommitted"


def test_two_scorers_share_partitions_and_survive_one_stopping(pipeline: Pipeline, trained: TrainedModel) -> None:
    events = last_events(trained.sim, 12_000)
    pipeline.start("score", "0")
    pipeline.start("score", "1")
    pipeline.start("deep")
    feeder = pipeline.feed(events, 800.0)
    # Stop replica 1 only once both replicas own partitions and replica 1 has committed work.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        logs = [(pipeline.logs / f"score-{i}.log").read_text() for i in (0, 1)]
        if all(re.search(r"partitions_assigned .*partitions=\[\d", log) for log in logs):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    # Traffic is still flowing to every partition when replica 1 goes away.
    assert feeder.is_alive()
    assert pipeline.kill("score-1", signal.SIGTERM) == 0
    feeder.join()

    pipeline.exactly_once(events, timeout_s=240)
    assert set(pipeline.stop_all().values()) == {0}
    # Both replicas did work (structlog sorts the keys: `batches` is not the first after the event).
    for name in ("score-0", "score-1"):
        stopped = re.findall(r"stage_stopped .*?\bbatches=(\d+)", (pipeline.logs / f"{name}.log").read_text())
        assert len(stopped) == 1 and int(stopped[0]) > 0, f"{name}: {stopped}"
