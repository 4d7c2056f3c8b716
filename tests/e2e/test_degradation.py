"""Degrade on purpose: deep stage down, broken model, Redis down, hostile input,
SIGTERM under load, hot reload — on the real broker and Redis."""

from __future__ import annotations

import io
import json
import shutil
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

import schemas
from models.artifacts import promote
from stream.deadletter import headers_dict
from stream.kafka.codec import Codec, frame
from stream.testing import free_port, sample_transaction
from tests.e2e.conftest import Pipeline, RedisServer, TrainedModel, last_events, wait_assigned

pytestmark = pytest.mark.e2e


def phase(pipeline: Pipeline, events: list[dict[str, Any]], done_before: int, rate: float = 0.0) -> list[dict[str, Any]]:
    """Produce `events` and return their decisions once every earlier one and these are in."""
    pipeline.produce(events, rate)
    ids = {e["transaction_id"] for e in events}
    return [d for d in pipeline.decisions(done_before + len(events), settle_s=0.5) if d["transaction_id"] in ids]


def routes(decisions: list[dict[str, Any]]) -> Counter[str]:
    return Counter(d["route"] for d in decisions)


def test_deep_worker_down_falls_back_to_xgboost_then_recovers(pipeline: Pipeline, trained: TrainedModel) -> None:
    fast = {"FRAUDSTREAM_FALLBACK__DEEP_HEARTBEAT_S": "2", "FRAUDSTREAM_FALLBACK__DEEP_CHECK_INTERVAL_S": "0.5"}
    events = last_events(trained.sim, 6_000)
    pipeline.start_stages(score_env=fast, deep_env=fast)
    first = phase(pipeline, events[:2000], 0)
    assert routes(first)["DEEP"] > 0 and routes(first)["XGB_FALLBACK"] == 0

    pipeline.kill("deep-0")
    time.sleep(2.0 + 0.5 + 0.5)  # heartbeat expiry + one health check + margin: the configured detection time
    second = phase(pipeline, events[2000:4000], 2000)
    assert routes(second)["XGB_FALLBACK"] > 0
    assert routes(second)["DEEP"] == 0
    assert {d["decision"] for d in second if d["route"] == "XGB_FALLBACK"} <= {"APPROVE", "REVIEW"}

    pipeline.start("deep", env=fast)
    wait_assigned(pipeline, "deep-0", after=1)
    time.sleep(1.0)
    third = phase(pipeline, events[4000:], 4000)
    assert routes(third)["DEEP"] > 0 and routes(third)["XGB_FALLBACK"] == 0
    pipeline.exactly_once(events)


def test_broken_model_gives_rules_and_redis_down_never_approves_silently(
    pipeline: Pipeline, trained: TrainedModel, own_redis: RedisServer, tmp_path: Path
) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(trained.root, root)
    (root / "CURRENT").write_text(trained.version)
    pipeline.env.update({
        "FRAUDSTREAM_MODEL__DIR": str(root),
        "FRAUDSTREAM_MODEL__VERSION": "latest",
        "FRAUDSTREAM_REDIS_URL": own_redis.url,
        "FRAUDSTREAM_REDIS__SOCKET_TIMEOUT_S": "0.5",
        "FRAUDSTREAM_FALLBACK__BREAKER_RESET_S": "1",
    })  # fmt: skip
    events = last_events(trained.sim, 7_500)
    chunks = [events[i : i + 1500] for i in range(0, 7500, 1500)]
    pipeline.start("score")
    pipeline.start("deep")
    wait_assigned(pipeline, "score-0")
    normal = phase(pipeline, chunks[0], 0)
    assert routes(normal)["XGB_APPROVE"] > 0 and routes(normal)["RULES"] == 0

    # A corrupted version becomes current (as a bad deploy would, bypassing `models promote`'s check).
    shutil.copytree(root / trained.version, root / "v-broken")
    (root / "v-broken" / "xgb.ubj").write_bytes(b"{not a model")
    (root / "CURRENT").write_text("v-broken")
    broken = phase(pipeline, chunks[1], 1500)
    assert set(routes(broken)) == {"RULES"}
    assert all(d["reasons"] and d["reasons"][0]["source"] == "rules" for d in broken)

    promote(root, trained.version)
    recovered = phase(pipeline, chunks[2], 3000)
    assert routes(recovered)["RULES"] == 0 and routes(recovered)["XGB_APPROVE"] > 0

    own_redis.stop()
    no_redis = phase(pipeline, chunks[3], 4500)
    assert set(routes(no_redis)) <= {"RULES", "SAFE_DEFAULT"}
    assert routes(no_redis)["SAFE_DEFAULT"] > 0
    # Without features the new-device rule cannot run, so nothing is approved by omission.
    assert all(d["decision"] != "APPROVE" for d in no_redis)

    own_redis.start()
    time.sleep(2.0)  # breaker reset (1 s) + a heartbeat from the deep worker
    back = phase(pipeline, chunks[4], 6000)
    assert routes(back)["RULES"] == 0 and routes(back)["SAFE_DEFAULT"] == 0
    assert routes(back)["XGB_APPROVE"] > 0
    pipeline.exactly_once(events)


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_hostile_input_ends_where_documented_and_metrics_count_it(pipeline: Pipeline, trained: TrainedModel) -> None:
    codec = Codec()
    good = last_events(trained.sim, 2_000)
    now_ms = int(time.time() * 1000)
    short = dict(sample_transaction(1))
    short.pop("mcc")
    hostile: dict[str, bytes | None] = {
        "garbage": b"\xde\xad\xbe\xef" * 3,
        "wrong_magic": b"\x07" + codec.encode("Transaction", sample_transaction(2))[1:],
        "unknown_schema_id": b"\x00\x00\x00\x27\x0f" + codec.encode("Transaction", sample_transaction(3))[5:],
        "truncated": codec.encode("Transaction", sample_transaction(4))[:12],
        "wrong_type": codec.encode(
            "Label",
            {
                "transaction_id": "x",
                "customer_id": "c",
                "terminal_id": "m",
                "is_fraud": True,
                "label_time": now_ms,
                "event_time": now_ms,
                "source": "s",
            },
        )[5:],
        "negative_amount": codec.encode("Transaction", sample_transaction(5, amount=-1)),
        "absurd_amount": codec.encode("Transaction", sample_transaction(6, amount=10**15)),
        "nan_latitude": codec.encode("Transaction", sample_transaction(7, latitude=float("nan"))),
        "inf_longitude": codec.encode("Transaction", sample_transaction(8, longitude=float("inf"))),
        "far_past": codec.encode("Transaction", sample_transaction(9, event_time=631_152_000_000)),  # 1990
        "far_future": codec.encode("Transaction", sample_transaction(10, event_time=now_ms + 30 * 86_400_000)),
        "oversized": codec.encode("Transaction", sample_transaction(11, ip="x" * 100_000)),
        "tombstone": None,
    }
    hostile["wrong_type"] = b"\x00\x00\x00\x03\xe9" + (hostile["wrong_type"] or b"")  # a Label body under the Transaction id
    # A producer on an old or wrong schema that lacks a required field (mcc), framed as Transaction.
    reduced = schemas.schema_json("Transaction")
    reduced["fields"] = [f for f in reduced["fields"] if f["name"] != "mcc"]
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(reduced), short)
    hostile["missing_required_field"] = frame(1001, buf.getvalue())
    null_key = sample_transaction(12, transaction_id="null-key-tx", event_time=now_ms)
    repeat = good[0]

    port = free_port()
    pipeline.start_stages(score_env={"FRAUDSTREAM_METRICS__PORT": str(port)})
    pipeline.produce(good[:1000])
    pipeline.produce_raw(list(hostile.values()))
    from confluent_kafka import Producer

    producer = Producer(pipeline.settings.kafka.producer_config(None))
    producer.produce(pipeline.settings.kafka.topics.transactions, codec.encode("Transaction", null_key), key=None)
    producer.produce(pipeline.settings.kafka.topics.transactions, codec.encode("Transaction", repeat), key=b"again")
    producer.flush(10)
    pipeline.produce(good[1000:])

    decisions = pipeline.decisions(2_001)
    ids = Counter(d["transaction_id"] for d in decisions)
    assert len(decisions) == 2_001  # the good traffic, the null-key record, and the repeat decided once
    assert max(ids.values()) == 1
    assert "null-key-tx" in ids
    dlq = pipeline.read(pipeline.settings.kafka.topics.dlq, len(hostile) + 1)
    assert len(dlq) == len(hostile) + 1
    by_value = {m.value(): headers_dict(m.headers()) for m in dlq}
    for name, raw in hostile.items():
        assert raw in by_value, name
        h = by_value[raw]
        assert h["stage"] == "scorer" and h["source.topic"] == pipeline.settings.kafka.topics.transactions, name
        assert h["error.class"] in ("DecodeError", "ValidationError"), (name, h)
    dup = by_value[codec.encode("Transaction", repeat)]
    assert dup["error.class"] == "DuplicateTransaction"

    m = _scrape(port)
    decided = sum(v for k, v in m.items() if k.startswith("fraudstream_decisions_total"))
    dead = sum(v for k, v in m.items() if k.startswith("fraudstream_dlq_records_total"))
    routed_deep = sum(1 for d in decisions if d["route"] == "DEEP")
    assert decided == len(decisions) - routed_deep  # stage 1 counts its own decisions; DEEP ones are the worker's
    assert dead == len(hostile) + 1
    assert m["fraudstream_fallback_level"] == 0
    assert any(k.startswith("fraudstream_consumer_lag") for k in m)
    assert any(k.startswith("fraudstream_decision_latency_seconds_bucket") for k in m)
    assert m[f'fraudstream_model_version_info{{version="{trained.version}"}}'] == 1
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status == 200
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200


def test_sigterm_under_load_loses_nothing_and_exits_zero(pipeline: Pipeline, trained: TrainedModel) -> None:
    events = last_events(trained.sim, 6_000)
    pipeline.start("score")
    pipeline.start("deep")
    feeder = pipeline.feed(events, 1000.0)
    wait_assigned(pipeline, "score-0")
    time.sleep(2.0)
    assert pipeline.kill("score-0", signal.SIGTERM) == 0
    assert pipeline.kill("deep-0", signal.SIGTERM) == 0
    pipeline.start("score")
    pipeline.start("deep")
    feeder.join()
    pipeline.exactly_once(events)


def two_versions(trained: TrainedModel, tmp_path: Path) -> Path:
    """A private artifacts root with the trained version and a second one, `v2`, of the same weights."""
    root = tmp_path / "artifacts"
    shutil.copytree(trained.root, root)
    shutil.copytree(root / trained.version, root / "v2")
    manifest = json.loads((root / "v2" / "manifest.json").read_text())
    (root / "v2" / "manifest.json").write_text(json.dumps({**manifest, "version": "v2"}))
    return root


def test_promoted_model_takes_effect_without_restart(pipeline: Pipeline, trained: TrainedModel, tmp_path: Path) -> None:
    root = two_versions(trained, tmp_path)
    promote(root, trained.version)
    pipeline.env.update({"FRAUDSTREAM_MODEL__DIR": str(root), "FRAUDSTREAM_MODEL__VERSION": "latest"})
    events = last_events(trained.sim, 3_000)
    pipeline.start_stages()
    first = phase(pipeline, events[:1500], 0)
    assert {d["model_version"] for d in first} == {trained.version}
    promote(root, "v2")
    second = phase(pipeline, events[1500:], 1500)
    assert {d["model_version"] for d in second} == {"v2"}
    assert {d["route"] for d in second} >= {"DEEP", "XGB_APPROVE"}  # both stages switched
    pipeline.exactly_once(events)


def test_ab_arms_pin_a_version_per_customer(pipeline: Pipeline, trained: TrainedModel, tmp_path: Path) -> None:
    root = two_versions(trained, tmp_path)
    pipeline.env.update({
        "FRAUDSTREAM_MODEL__DIR": str(root),
        "FRAUDSTREAM_ARMS": f"[{{name: A, share: 3, model_version: {trained.version}}}, "
        "{name: B, share: 1, model_version: v2}]",
    })  # fmt: skip
    events = last_events(trained.sim, 3_000)
    pipeline.start_stages()
    decisions = phase(pipeline, events, 0)
    assert len(decisions) == 3_000
    arms_of: dict[str, set[tuple[str, str]]] = {}
    for d in decisions:
        arms_of.setdefault(d["customer_id"], set()).add((d["arm"], d["model_version"]))
    assert all(len(v) == 1 for v in arms_of.values())  # a customer always lands in the same arm
    pairs = Counter(next(iter(v)) for v in arms_of.values())
    assert set(pairs) == {("A", trained.version), ("B", "v2")}
    share_b = pairs[("B", "v2")] / sum(pairs.values())
    assert 0.15 < share_b < 0.35  # 1 of 4 shares
    assert {d["route"] for d in decisions if d["arm"] == "B"} >= {"DEEP", "XGB_APPROVE"}  # both stages honour the arm
