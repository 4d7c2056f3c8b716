"""Backtest, replay, explain and shadow mode against the real broker and Redis."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
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
from typer.testing import CliRunner

from models import xgb as xgbm
from models.artifacts import load_bundle
from models.deep import predict_proba
from models.evaluation import detection_metrics
from models.features import FeatureEngine
from models.featureset import FEATURE_NAMES
from models.offline import OfflineFeatures
from models.training import compute_rows
from stream.cli import app
from stream.errors import ReproductionError
from stream.kafka.codec import Codec
from stream.kafka.topics import ensure_topics
from stream.ops import backtest as bt
from stream.ops.explain import CARRIED, explain, explanation, require_reproduced, to_html
from stream.ops.provenance import MATURE_ENOUGH
from stream.ops.replay import replay
from stream.ops.report import PLOTS, live_scores_for, render
from stream.ops.timerange import read_range
from stream.services import feature_store
from tests.e2e.conftest import Pipeline, TrainedModel, last_events

pytestmark = pytest.mark.e2e


def _screenshot(page: Path, shot: Path, profile: Path, size: str) -> None:
    browser = shutil.which("chromium")
    assert browser, "chromium is installed by `make test` (deploy/local/infra.sh prepare)"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
                    f"--screenshot={shot}", f"--window-size={size}", f"file://{page}"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    keep = os.environ.get("KEEP_SCREENSHOTS")
    if keep:  # for a person to look at
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)


def _snapshot(url: str, ns: str) -> dict[bytes, bytes | None]:
    client = redis.Redis.from_url(url)
    keys = sorted(client.scan_iter(match=f"fs:{ns}:*", count=1000))
    snap = {k: client.dump(k) for k in keys}
    client.close()
    return snap


def test_backtest_replay_explain_and_shadow(pipeline: Pipeline, trained: TrainedModel, tmp_path: Path) -> None:
    events = last_events(trained.sim, 5_000)
    window_ids = {e["transaction_id"] for e in events[3000:]}
    # As the demo does: part of the state is warmed straight into Redis, never on the topic.
    bundle = load_bundle(trained.root / trained.version)
    offline = OfflineFeatures(FeatureEngine(bundle.delay_days))
    offline.run(events[:1000])
    feature_store(pipeline.settings, bundle.delay_days).backfill(offline)
    events = events[1000:]
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

    data = bt.load(pipeline.settings.kafka, t1, t2, lookback_days=1.0)
    assert len(data.window) == 2000 and len(data.history) == 2000
    assert all(len(d.features) == len(FEATURE_NAMES) for d in data.live.values())
    result = bt.run(bundle, data)
    rebuilt = bt.run(bundle, data, features="rebuilt")

    # 2. live Redis state is byte-for-byte untouched
    assert _snapshot(pipeline.settings.redis.url, live_ns) == before

    # 1. the rebuild equals an offline evaluation of the same events (the training code path)
    ordered = bt._event_order(data.history) + bt._event_order(data.window)
    frame = pd.DataFrame(ordered)
    labels = pd.DataFrame(data.labels)
    recomputed = compute_rows(frame, labels, 7)[2000:]
    np.testing.assert_array_equal(recomputed.x, rebuilt.features)
    # ... and the default scores every row on what live published, which the rebuild misses
    # for the customers warmed outside the topic: the report says so.
    assert result.metrics["features"]["scored_on_live_features"] == 2000
    assert result.carried is not None and result.carried.all()
    eq = result.metrics["features"]["rebuilt_equals_live"]
    assert eq is not None and 0.0 < eq < 1.0
    assert any("reproduces live's features for only" in w for w in result.metrics["warnings"])
    assert rebuilt.metrics["comparison"]["same_decision"] < 1.0 or rebuilt.metrics["comparison"]["max_score_difference"] > 1e-3
    assert result.metrics["range"] == {
        "from_ms": t1, "to_ms": t2, "first_event_time": min(e["event_time"] for e in data.window),
        "last_event_time": max(e["event_time"] for e in data.window), "lookback_days": 1.0, "warm_up_transactions": 2000,
    }  # fmt: skip
    lab = result.metrics["labels"]
    assert lab["window_frauds_labelled"] == int(result.y.sum()) > 0
    assert (lab["mature_share"] < MATURE_ENOUGH) == any("labels are mature for only" in w for w in result.metrics["warnings"])
    x = rebuilt.features
    margin = xgbm.margins(bundle.booster, x)
    p = xgbm.sigmoid(margin)
    th = bundle.thresholds
    band = (p >= th.approve_below) & (p < th.block_above)
    score = p.copy()
    score[band] = predict_proba(bundle.net, x[band], margin[band], xgbm.leaves(bundle.booster, x[band]), recomputed.seq[band])
    np.testing.assert_allclose(rebuilt.scored.score, score, atol=1e-6)
    y = np.isin(frame["transaction_id"].to_numpy()[2000:], labels["transaction_id"].to_numpy())
    assert y.sum() > 0
    expected = detection_metrics(y, score, frame["event_time"].to_numpy()[2000:], frame["customer_id"].to_numpy()[2000:])
    for k, v in expected.items():
        assert rebuilt.metrics["candidate"]["detection"][k] == pytest.approx(v, abs=1e-6)

    # 3. a backtest of the live model reproduces every published decision and score
    assert result.metrics["live"]["decisions_found"] == 2000
    assert result.metrics["live"]["degraded"] == 0
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
    assert "id='provenance'" in page and "id='warnings'" in page
    _screenshot(report, tmp_path / "report.png", tmp_path / "chrome", "1400,2600")

    # 5. replay yields the same records, keys and timestamps
    target = f"replayed-{live_ns}"
    ensure_topics(pipeline.settings.kafka, [target])
    n = replay(pipeline.settings.kafka, pipeline.settings.kafka.topics.transactions, t1, t2, target)
    assert n == 2000

    def records(topic: str, start: int, end: int | None) -> list[tuple[int, bytes | None, bytes | None]]:
        return sorted((m.timestamp()[1], m.key(), m.value()) for m in read_range(pipeline.settings.kafka, topic, start, end))

    assert records(target, 0, None) == records(pipeline.settings.kafka.topics.transactions, t1, t2)

    # 6. explain a REVIEW/BLOCK decision whose state the topic alone does not hold: it explains
    # the vector live scored, reproduces the published scores, and names what the rebuild misses
    flagged = [d for d in data.live.values() if d.outcome.name != "APPROVE"]
    deep_flagged = [d for d in flagged if d.route.name == "DEEP"]
    row = {e["transaction_id"]: i for i, e in enumerate(result.events)}
    assert result.rebuilt is not None
    misses = {d.transaction_id for d in flagged if not np.allclose(result.rebuilt[row[d.transaction_id]],
              result.features[row[d.transaction_id]], equal_nan=True, atol=1e-6)}  # fmt: skip
    chosen = sorted(deep_flagged or flagged, key=lambda d: d.transaction_id not in misses)[0]
    xgb_score = float(chosen.xgb_score or 0.0)
    e = explain(pipeline.settings.kafka, trained.root, chosen.transaction_id, 0, None, 3.0)
    assert e.decision.transaction_id == chosen.transaction_id
    assert e.source == CARRIED and e.reproduced and e.checks
    np.testing.assert_array_equal(e.values, np.array(chosen.features, dtype=np.float32))
    require_reproduced(e)
    if chosen.transaction_id in misses:
        assert e.rebuild_differences() and any("rebuilding from the topic alone" in w for w in e.warnings())
    # a published score this model does not give is refused loudly, naming both numbers
    off = dataclasses.replace(chosen, xgb_score=xgb_score / 2)
    wrong = explanation(off, bundle, e.values, CARRIED)
    assert not wrong.reproduced
    with pytest.raises(ReproductionError, match="XGBoost score published"):
        require_reproduced(wrong)
    # the same through the real commands
    shown = CliRunner().invoke(
        app, ["explain", chosen.transaction_id, "--lookback-days", "3", "--html", str(tmp_path / "cli.html")], env=pipeline.env
    )
    assert shown.exit_code == 0, shown.output
    assert "features carried by the decision" in shown.output and "XGBoost score: published" in shown.output
    assert "DIFFERS" not in shown.output and (tmp_path / "cli.html").exists()
    ran = CliRunner().invoke(
        app,
        ["backtest", "--from", str(t1), "--to", str(t2), "--lookback-days", "1", "--out", str(tmp_path / "bt")],
        env=pipeline.env,
    )
    assert ran.exit_code == 0, ran.output
    assert json.loads((tmp_path / "bt" / "metrics.json").read_text())["comparison"]["same_decision"] == 1.0
    assert "same decision as live: 100.00% of 2,000" in ran.output and "warning: the topic's look-back" in ran.output
    explain_page = tmp_path / "explain.html"
    explain_page.write_text(to_html(e))
    _screenshot(explain_page, tmp_path / "explain.png", tmp_path / "chrome-explain", "1200,1400")
    assert "Published and recomputed" in explain_page.read_text()
    assert e.xgb.additivity_error < 1e-3
    assert e.xgb.output == pytest.approx(float(np.log(xgb_score / (1 - xgb_score))), abs=1e-3)
    if e.deep is not None:
        assert e.deep.additivity_error < 0.02 * max(1.0, abs(e.deep.output - e.deep.base))
        assert torch.sigmoid(torch.tensor(e.deep.output)).item() == pytest.approx(chosen.deep_score, abs=1e-4)

    # Shadow mode: the live version in shadow decides exactly what live decided, into the shadow
    # topic only; real decisions and the live state untouched.
    pipeline.start("shadow", "0", args=("--model", trained.version))
    published = {d["transaction_id"]: d for d in pipeline.decisions(4_000)}
    decisions_before = len(published)
    shadow = [codec.decode_decision(m.value()) for m in pipeline.read(pipeline.settings.kafka.topics.shadow, 4_000)]
    assert len({d.transaction_id for d in shadow}) == 4_000
    assert {d.arm for d in shadow} == {"shadow"}
    assert all(d.outcome.name == published[d.transaction_id]["decision"] for d in shadow)
    assert max(abs(d.score - published[d.transaction_id]["score"]) for d in shadow) < 1e-5
    assert len(pipeline.decisions(4_000)) == decisions_before == 4_000
    assert _snapshot(pipeline.settings.redis.url, live_ns) == before
