"""Backtest, replay, explain and shadow mode against the real broker and Redis."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
import torch

from models import xgb as xgbm
from models.artifacts import load_bundle
from models.deep import predict_proba
from models.evaluation import detection_metrics
from models.training import compute_features
from stream.kafka.codec import Codec
from stream.kafka.topics import ensure_topics
from stream.ops import backtest as bt
from stream.ops.explain import explain
from stream.ops.replay import replay
from stream.ops.report import PLOTS, live_scores_for, render
from stream.ops.timerange import read_range
from tests.e2e.conftest import Pipeline, TrainedModel, last_events

pytestmark = pytest.mark.e2e


def _snapshot(url: str, ns: str) -> dict[bytes, bytes | None]:
    client = redis.Redis.from_url(url)
    keys = sorted(client.scan_iter(match=f"fs:{ns}:*", count=1000))
    snap = {k: client.dump(k) for k in keys}
    client.close()
    return snap


def test_backtest_replay_explain_and_shadow(pipeline: Pipeline, trained: TrainedModel, tmp_path: Path) -> None:
    events = last_events(trained.sim, 4_000)
    window_ids = {e["transaction_id"] for e in events[2000:]}
    pipeline.start_stages()
    pipeline.produce(events[:2000])
    time.sleep(0.5)
    t1 = int(time.time() * 1000)
    time.sleep(0.5)
    pipeline.produce(events[2000:])
    # Fraud labels of the window, as the label feed would publish them (no label consumer runs).
    sim_labels = trained.sim.labels[trained.sim.labels["transaction_id"].isin(window_ids)]
    from confluent_kafka import Producer

    producer = Producer(pipeline.settings.kafka.producer_config(None))
    codec = Codec()
    for lab in sim_labels.to_dict("records"):
        lab = {k: (v.item() if hasattr(v, "item") else v) for k, v in lab.items()}
        producer.produce(pipeline.settings.kafka.topics.labels, codec.encode("Label", lab), key=lab["transaction_id"].encode())
    producer.flush(10)
    assert len(pipeline.decisions(4_000)) == 4_000
    assert pipeline.stop_all() == {"score-0": 0, "deep-0": 0}
    t2 = int(time.time() * 1000)
    live_ns = pipeline.settings.redis.namespace
    before = _snapshot(pipeline.settings.redis.url, live_ns)
    assert before  # the live scorer did write state

    bundle = load_bundle(trained.root / trained.version)
    data = bt.load(pipeline.settings.kafka, t1, t2, lookback_days=1.0)
    assert len(data.window) == 2000 and len(data.history) == 2000
    result = bt.run(bundle, data)

    # 2. live Redis state is byte-for-byte untouched
    assert _snapshot(pipeline.settings.redis.url, live_ns) == before

    # 1. equals an offline evaluation of the same events (the training code path)
    ordered = bt._event_order(data.history) + bt._event_order(data.window)
    frame = pd.DataFrame(ordered)
    labels = pd.DataFrame(data.labels)
    x = compute_features(frame, labels, 7)[2000:]
    np.testing.assert_array_equal(x, result.features)
    margin = xgbm.margins(bundle.booster, x)
    p = xgbm.sigmoid(margin)
    th = bundle.thresholds
    band = (p >= th.approve_below) & (p < th.block_above)
    score = p.copy()
    score[band] = predict_proba(bundle.net, x[band], margin[band], xgbm.leaves(bundle.booster, x[band]))
    np.testing.assert_allclose(result.scored.score, score, atol=1e-6)
    y = np.isin(frame["transaction_id"].to_numpy()[2000:], labels["transaction_id"].to_numpy())
    assert y.sum() > 0
    expected = detection_metrics(y, score, frame["event_time"].to_numpy()[2000:], frame["customer_id"].to_numpy()[2000:])
    for k, v in expected.items():
        assert result.metrics["candidate"]["detection"][k] == pytest.approx(v, abs=1e-6)

    # 3. a backtest of the live model reproduces what was published
    assert result.metrics["live"]["decisions_found"] == 2000
    assert result.metrics["comparison"]["same_decision"] == 1.0
    assert result.metrics["comparison"]["max_score_difference"] < 1e-5

    # 4. the report renders in headless Chromium and holds every plot
    report = tmp_path / "report.html"
    report.write_text(render(result, live_scores_for(result, data.live), "test backtest"))
    page = report.read_text()
    for name in PLOTS:
        m = re.search(rf"<figure id='{name}'><img alt='{name}' src='data:image/png;base64,([^']+)'>", page)
        assert m, name
        assert base64.b64decode(m.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    browser = shutil.which("chromium")
    assert browser, "chromium is installed by `make test` (deploy/local/infra.sh prepare)"
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}",
                    f"--screenshot={shot}", "--window-size=1400,2600", f"file://{report}"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000

    # 5. replay yields the same records, keys and timestamps
    target = f"replayed-{live_ns}"
    ensure_topics(pipeline.settings.kafka, [target])
    n = replay(pipeline.settings.kafka, pipeline.settings.kafka.topics.transactions, t1, t2, target)
    assert n == 2000

    def records(topic: str, start: int, end: int | None) -> list[tuple[int, bytes | None, bytes | None]]:
        return sorted((m.timestamp()[1], m.key(), m.value()) for m in read_range(pipeline.settings.kafka, topic, start, end))

    assert records(target, 0, None) == records(pipeline.settings.kafka.topics.transactions, t1, t2)

    # 6. explain a REVIEW/BLOCK decision: contributions add up to each model's output
    flagged = [d for d in data.live.values() if d.outcome.name != "APPROVE"]
    deep_flagged = [d for d in flagged if d.route.name == "DEEP"]
    chosen = (deep_flagged or flagged)[0]
    xgb_score = float(chosen.xgb_score or 0.0)
    e = explain(pipeline.settings.kafka, trained.root, chosen.transaction_id, 0, None, 1.0)
    assert e.decision.transaction_id == chosen.transaction_id
    assert e.xgb.additivity_error < 1e-3
    assert e.xgb.output == pytest.approx(float(np.log(xgb_score / (1 - xgb_score))), abs=1e-3)
    if e.deep is not None:
        assert e.deep.additivity_error < 0.02 * max(1.0, abs(e.deep.output - e.deep.base))
        assert torch.sigmoid(torch.tensor(e.deep.output)).item() == pytest.approx(chosen.deep_score, abs=1e-4)

    # Shadow mode: a candidate decides everything into the shadow topic, real decisions untouched.
    pipeline.start("shadow", "0", args=("--model", trained.version))
    decisions_before = len(pipeline.decisions(4_000))
    shadow = pipeline.read(pipeline.settings.kafka.topics.shadow, 4_000)
    assert len({codec.decode("Decision", m.value())["transaction_id"] for m in shadow}) == 4_000
    assert {codec.decode("Decision", m.value())["arm"] for m in shadow} == {"shadow"}
    assert len(pipeline.decisions(4_000)) == decisions_before == 4_000
    assert _snapshot(pipeline.settings.redis.url, live_ns) == before
