"""Faults an operator meets, each once, on the real broker and Redis: the pipeline heals by
itself (no restart by hand), every transaction gets exactly one decision, and what cannot
be healed safely stops with a clear error instead of deciding twice."""

from __future__ import annotations

import re
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from models.artifacts import promote
from models.dataset import to_label_events
from stream.deadletter import headers_dict
from stream.kafka.codec import Codec
from tests.e2e.conftest import OwnInfra, Pipeline, TrainedModel, last_events, wait_assigned

pytestmark = pytest.mark.e2e


def test_broker_killed_and_restarted_mid_stream_heals_without_a_restart(
    own_pipeline: Pipeline, own_infra: OwnInfra, trained: TrainedModel
) -> None:
    events = last_events(trained.sim, 9_000)
    own_pipeline.start_stages()
    feeder = own_pipeline.feed(events, 300.0)
    time.sleep(8)
    own_infra.kill("kafka")
    time.sleep(35)  # longer than a transactional call's timeout: calls in flight time out and must be resumed
    own_infra.up()
    feeder.join()
    own_pipeline.exactly_once(events, timeout_s=150)
    assert all(p.poll() is None for p in own_pipeline.procs.values()), "a service exited: healing needed a restart"
    assert set(own_pipeline.stop_all().values()) == {0}


def test_label_consumer_stops_on_sigterm_after_a_broker_restart(
    own_pipeline: Pipeline, own_infra: OwnInfra, trained: TrainedModel
) -> None:
    labels = to_label_events(trained.sim.labels)[-20_000:]
    fields = {"transaction_id", "customer_id", "terminal_id", "is_fraud", "label_time", "event_time", "source"}
    codec, kafka = Codec(), own_pipeline.settings.kafka
    proc = own_pipeline.start("labels")
    wait_assigned(own_pipeline, "labels-0")
    stop = threading.Event()

    def feed() -> None:
        producer = Producer(kafka.producer_config(None))
        for lab in labels:
            if stop.is_set():
                break
            value = codec.encode("Label", {k: v for k, v in lab.items() if k in fields})
            producer.produce(kafka.topics.labels, value=value, key=lab["transaction_id"].encode())
            producer.poll(0)
            time.sleep(0.002)
        producer.purge()

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    time.sleep(5)
    own_infra.kill("kafka")
    time.sleep(35)
    own_infra.up()
    time.sleep(20)  # back: a transactional call begun during the outage may now block past its timeout
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    stop.set()
    thread.join(10)
    assert code == 0
    assert time.monotonic() - began < 45


def test_a_scorer_paused_past_its_timeouts_rejoins_decides_and_exits_cleanly(pipeline: Pipeline, trained: TrainedModel) -> None:
    events = last_events(trained.sim, 9_000)
    short_txn = {"FRAUDSTREAM_KAFKA__TRANSACTION_TIMEOUT_MS": "10000"}
    pipeline.start("score", "0", env=short_txn)
    pipeline.start("score", "1", env=short_txn)
    pipeline.start("deep")
    for name in ("score-0", "score-1", "deep-0"):
        wait_assigned(pipeline, name)
    feeder = pipeline.feed(events, 300.0)
    time.sleep(5)
    pipeline.procs["score-0"].send_signal(signal.SIGSTOP)
    time.sleep(16)  # past the session (6 s) and the transaction timeout (10 s)
    pipeline.procs["score-0"].send_signal(signal.SIGCONT)
    feeder.join()
    pipeline.exactly_once(events, timeout_s=150)
    # The paused scorer was evicted, then took partitions back; it stops with exit 0.
    assert set(pipeline.stop_all().values()) == {0}
    log = (pipeline.logs / "score-0.log").read_text()
    assert len(re.findall(r"partitions_assigned .*partitions=\[\d", log)) >= 2, "score-0 did not rejoin"
    assert "Traceback" not in log


def decided_by_one_scorer(pipeline: Pipeline, events: list[dict[str, Any]]) -> None:
    """Start a scorer, feed `events`, wait until each has its one decision."""
    pipeline.start("score")
    wait_assigned(pipeline, "score-0")
    pipeline.produce(events)
    pipeline.exactly_once(events)


def test_lost_committed_offsets_stop_the_scorer_instead_of_deciding_again(pipeline: Pipeline, trained: TrainedModel) -> None:
    events = last_events(trained.sim, 1_500)
    decided_by_one_scorer(pipeline, events)
    assert pipeline.stop_all() == {"score-0": 0}
    # The broker comes back without the group's committed offsets (as a coordinator whose
    # offsets partition was lost would): the group is gone, its progress mark in Redis is not.
    admin = AdminClient(pipeline.settings.kafka.admin_config())
    deadline = time.monotonic() + 60
    while True:  # a static member stays in the group until its session times out
        try:
            for future in admin.delete_consumer_groups([pipeline.settings.scorer.group_id], request_timeout=30).values():
                future.result()
            break
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.NON_EMPTY_GROUP or time.monotonic() > deadline:
                raise
            time.sleep(1)
    proc = pipeline.start("score")
    assert proc.wait(90) == 1
    del pipeline.procs["score-0"]
    log = " ".join((pipeline.logs / "score-0.log").read_text().split())  # the error line is wrapped
    assert "offsets were lost" in log and "--reset-offsets" in log
    assert "Traceback" not in log
    decisions = pipeline.decisions(len(events), settle_s=3)
    assert len(decisions) == len(events)
    assert max(Counter(d["transaction_id"] for d in decisions).values()) == 1


def test_the_same_transaction_id_under_another_customer_is_never_decided_twice(pipeline: Pipeline, trained: TrainedModel) -> None:
    events = last_events(trained.sim, 600)
    decided_by_one_scorer(pipeline, events)
    again = [{**e, "customer_id": f"other-{e['customer_id']}"} for e in events[:100]]
    pipeline.produce(again)
    dlq = pipeline.read(pipeline.settings.kafka.topics.dlq, 100, timeout_s=60)
    assert Counter(headers_dict(m.headers())["error.class"] for m in dlq) == {"DuplicateTransaction": 100}
    decisions = pipeline.decisions(len(events), settle_s=3)
    assert Counter(Counter(d["transaction_id"] for d in decisions).values()) == {1: 600}


def _buffer_records(pipeline: Pipeline, wanted: int) -> list[dict[str, Any]]:
    msgs = pipeline.read(pipeline.settings.kafka.topics.ambiguous, wanted, timeout_s=60, settle_s=0.5)
    return [d.value for d in Codec().decode_messages("ScoredTransaction", msgs).oks]


def test_a_bad_deploy_degrades_every_service_and_stops_none(pipeline: Pipeline, trained: TrainedModel, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    shutil.copytree(trained.root, root)
    (root / "CURRENT").write_text(trained.version)
    pipeline.env.update({"FRAUDSTREAM_MODEL__DIR": str(root), "FRAUDSTREAM_MODEL__VERSION": "latest"})
    events = last_events(trained.sim, 4_500)
    pipeline.start_stages()
    pipeline.produce(events[:1500])
    pipeline.decisions(1500, settle_s=0.5)
    band = _buffer_records(pipeline, 1)
    assert band, "no transaction went to the deep stage"

    # A corrupted version is promoted the way a broken deploy would (bypassing `models promote`).
    shutil.copytree(root / trained.version, root / "v-broken")
    (root / "v-broken" / "xgb.ubj").write_bytes(b"{not a model")
    (root / "CURRENT").write_text("v-broken")
    pipeline.produce(events[1500:3000])
    second = {e["transaction_id"] for e in events[1500:3000]}
    broken = [d for d in pipeline.decisions(3000, settle_s=0.5) if d["transaction_id"] in second]
    assert {d["route"] for d in broken} == {"RULES"}
    # A scorer started during the bad deploy starts degraded instead of exiting.
    pipeline.start("score", "1")
    wait_assigned(pipeline, "score-1")
    # Buffer records naming versions that cannot be used are decided from their XGBoost score.
    codec, kafka = Codec(), pipeline.settings.kafka
    producer = Producer(kafka.producer_config(None))
    odd = []
    for i, version in enumerate(["v-broken", "../../etc", "/tmp/x", "no-such-version"]):
        rec = {**band[0], "model_version": version}
        rec["transaction"] = {**rec["transaction"], "transaction_id": f"odd-version-{i}"}
        odd.append(rec["transaction"]["transaction_id"])
        producer.produce(kafka.topics.ambiguous, value=codec.encode("ScoredTransaction", rec), key=b"odd")
    assert producer.flush(30) == 0
    decided = {d["transaction_id"]: d for d in pipeline.decisions(3004, settle_s=1)}
    assert all(decided[t]["route"] == "XGB_FALLBACK" and decided[t]["decision"] in {"REVIEW", "APPROVE"} for t in odd)
    assert all(p.poll() is None for p in pipeline.procs.values())

    promote(root, trained.version)
    pipeline.produce(events[3000:])
    third = {e["transaction_id"] for e in events[3000:]}
    recovered = [d for d in pipeline.decisions(4504, settle_s=0.5) if d["transaction_id"] in third]
    assert Counter(d["route"] for d in recovered)["RULES"] == 0
    pipeline.exactly_once(events + [{"transaction_id": t} for t in odd])
    assert set(pipeline.stop_all().values()) == {0}
