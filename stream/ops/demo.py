"""`fraudstream demo`: the whole product on one box, with a live view and a summary.

Trains a model if none exists, warms a fresh Redis namespace with the simulated
history, starts the scorer, the deep worker and the label consumer as processes,
streams the last simulated day at the chosen rate with labels following, shows
throughput, latency and decisions live, and ends with detection metrics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from models.artifacts import list_versions, load_bundle, promote, resolve, save_bundle
from models.dataset import to_events, to_label_events
from models.features import FeatureEngine, OfflineFeatures
from models.simulator import SimConfig, simulate
from models.training import TrainConfig, train_models
from models.units import DAY_MS
from stream.config import Settings, load_settings
from stream.kafka.schema_registry import codec_for
from stream.kafka.topics import ensure_topics, pipeline_topics
from stream.ops.feed import produce_stream
from stream.state.connection import redis_client
from stream.state.featurestore import RedisFeatureStore


def ensure_model(settings: Settings, console: Console) -> None:
    root = settings.model.dir
    if [m for m in list_versions(root) if "error" not in m]:
        return
    console.print(f"[bold]no model under {root}: training one on 60 simulated days (about a minute)[/bold]")
    sim = simulate(SimConfig(seed=0))
    with console.status("training") as status:
        result = train_models(sim.transactions, sim.labels, TrainConfig(seed=0), progress=lambda m: status.update(m))
    save_bundle(
        root / "v1", result.booster, result.deep, result.mlp_only, result.thresholds, {"metrics": result.table, **result.extra}
    )
    promote(root, "v1")


def _view(counts: Counter[tuple[str, str]], lat: list[float], sent: int, started: float, total: int) -> Table:
    elapsed = max(time.monotonic() - started, 1e-6)
    n = sum(counts.values())
    t = Table(title=f"fraudstream demo — {n:,}/{total:,} decided, {n / elapsed:,.0f} decisions/s, {sent:,} sent")
    t.add_column("route")
    for o in ("APPROVE", "REVIEW", "BLOCK"):
        t.add_column(o, justify="right")
    for r in ("XGB_APPROVE", "XGB_BLOCK", "DEEP", "XGB_FALLBACK", "RULES", "SAFE_DEFAULT"):
        if any(k[0] == r for k in counts):
            t.add_row(r, *(f"{counts[(r, o)]:,}" for o in ("APPROVE", "REVIEW", "BLOCK")))
    if lat:
        recent = np.array(lat[-5000:])
        t.caption = f"latency (last 5k): p50 {np.percentile(recent, 50):.0f} ms · p99 {np.percentile(recent, 99):.0f} ms"
    return t


def _wait_until_ready(score_log: Path, deep_log: Path, procs: list[subprocess.Popen[bytes]], timeout_s: float = 90.0) -> None:
    """Start traffic only once every stage owns partitions and the scorer sees the deep worker
    (it starts first, finds no heartbeat and says deep_stage_down until the worker's first one),
    so the demo shows steady state rather than the start-up fallback."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return  # a service died: the summary shows its exit code
        logs = [f.read_text() if f.exists() else "" for f in (score_log, deep_log)]
        assigned = all("partitions_assigned" in text for text in logs)
        if assigned and logs[0].count("deep_stage_down") <= logs[0].count("deep_stage_back"):
            return
        time.sleep(0.25)


def run_demo(settings: Settings, config: Path | None, rate: float, seconds: float, console: Console) -> int:
    """Run the demo; returns the exit code."""
    ensure_model(settings, console)
    bundle = load_bundle(resolve(settings.model.dir, settings.model.version), deep=False)
    version = bundle.version
    run_id = time.strftime("%Y%m%d%H%M%S")
    flow = (
        "{"
        + ", ".join(f"{k}: demo.{run_id}.{k}" for k in ("transactions", "ambiguous", "decisions", "labels", "dlq", "shadow"))
        + "}"
    )
    env = {
        **os.environ,
        "FRAUDSTREAM_KAFKA__TOPICS": flow,
        "FRAUDSTREAM_REDIS__NAMESPACE": f"demo-{run_id}",
        "FRAUDSTREAM_MODEL__DIR": str(settings.model.dir),
        "FRAUDSTREAM_MODEL__VERSION": version,
        "FRAUDSTREAM_SCORER__GROUP_ID": f"demo-{run_id}-scorer",
        "FRAUDSTREAM_DEEP__GROUP_ID": f"demo-{run_id}-deep",
        "FRAUDSTREAM_LABELS__GROUP_ID": f"demo-{run_id}-labels",
    }
    run_settings = load_settings(config, env)
    ensure_topics(run_settings.kafka, pipeline_topics(run_settings.kafka))

    sim = simulate(SimConfig(seed=0))
    tx = sim.transactions
    cut = int(tx["event_time"].max()) - DAY_MS
    history, live = tx[tx["event_time"] <= cut], tx[tx["event_time"] > cut]
    live = live.iloc[: int(rate * seconds)]
    with console.status(f"warming feature state from {len(history):,} historical transactions"):
        offline = OfflineFeatures(FeatureEngine(bundle.delay_days))
        offline.run(to_events(history), to_label_events(sim.labels[sim.labels["label_time"] <= cut]))
        client = redis_client(run_settings.redis)
        RedisFeatureStore(client, run_settings.redis.namespace, run_settings.redis.ttl_days, offline.engine).backfill(offline)
        client.close()

    logs = Path(".run") / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for kind in ("score", "deep", "labels"):
        with open(logs / f"{kind}.log", "wb") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "stream", kind], env=env, stdout=log, stderr=log))  # noqa: S603
    with console.status("waiting for the services to join their groups and the scorer to see the deep worker"):
        _wait_until_ready(logs / "score.log", logs / "deep.log", procs)
    console.print(f"services started (logs in {logs}/); model {version}; streaming {len(live):,} transactions at {rate:.0f}/s")

    events = to_events(live)
    labels = to_label_events(sim.labels[sim.labels["label_time"] > cut])
    sent = [0]
    feeder = threading.Thread(
        target=produce_stream,
        args=(run_settings.kafka, events, rate, labels),
        kwargs={"on_progress": lambda n: sent.__setitem__(0, n)},
    )
    codec = codec_for(run_settings.kafka)
    consumer = Consumer(run_settings.kafka.consumer_config(f"demo-{run_id}-view"))
    consumer.subscribe([run_settings.kafka.topics.decisions])
    counts: Counter[tuple[str, str]] = Counter()
    latencies: list[float] = []
    decided: dict[str, str] = {}
    started = time.monotonic()
    feeder.start()
    deadline = started + seconds + 120
    try:
        with Live(_view(counts, latencies, 0, started, len(events)), console=console, refresh_per_second=4) as live_view:
            while len(decided) < len(events) and time.monotonic() < deadline:
                batch = codec.decode_messages("Decision", [m for m in consumer.consume(1000, 0.25) if m.error() is None])
                for d in batch.oks:
                    v = d.value
                    decided[v["transaction_id"]] = v["decision"]
                    counts[(v["route"], v["decision"])] += 1
                    latencies.append(v["latency_ms"])
                live_view.update(_view(counts, latencies, sent[0], started, len(events)))
    finally:
        feeder.join()
        consumer.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(60) for p in procs]

    y = live["is_fraud"].to_numpy()
    ids = live["transaction_id"].to_numpy()
    flagged = np.array([decided.get(i, "MISSING") in ("REVIEW", "BLOCK") for i in ids])
    blocked = np.array([decided.get(i) == "BLOCK" for i in ids])
    lat = np.array(latencies) if latencies else np.zeros(1)
    summary = Table(title="summary")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    rows = [
        ("transactions sent", f"{len(events):,}"),
        ("decisions received (one per transaction)", f"{len(decided):,}"),
        ("throughput", f"{len(decided) / max(time.monotonic() - started, 1e-6):,.0f} decisions/s"),
        ("latency p50 / p99 / max", f"{np.percentile(lat, 50):.0f} / {np.percentile(lat, 99):.0f} / {lat.max():.0f} ms"),
        ("frauds in the stream", f"{int(y.sum())}"),
        ("frauds caught (REVIEW or BLOCK)", f"{int((y & flagged).sum())} ({(y & flagged).sum() / max(y.sum(), 1):.1%})"),
        ("BLOCK precision", f"{(y & blocked).sum() / max(blocked.sum(), 1):.1%} of {int(blocked.sum())}"),
        ("legitimate sent to review", f"{(~y & flagged & ~blocked).sum() / max((~y).sum(), 1):.2%}"),
        ("service exit codes", ", ".join(str(c) for c in codes)),
    ]
    for measure, value in rows:
        summary.add_row(measure, value)
    console.print(summary)
    complete = len(decided) == len(events)
    if not complete:
        console.print(f"[red]{len(events) - len(decided)} transactions without a decision before the deadline[/red]")
    return 0 if complete and all(c == 0 for c in codes) else 1
