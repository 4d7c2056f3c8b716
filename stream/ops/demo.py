"""`fraudstream demo`: the whole product on one box, with a live view and a summary.

Trains a model if none exists, warms a fresh Redis namespace with the simulated
history, starts the scorer, the deep worker and the label consumer as processes,
streams the last simulated days (as many as `--seconds` at `--rate` needs, said when the
simulation holds fewer) with labels following, shows throughput, latency to a
read_committed consumer after a warm-up and a per-second trend (`stream.ops.liveview`),
and ends with detection metrics. The run's topics and keys stay for `explain` and
`backtest`; Ctrl-C prints the summary so far and deletes them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.live import Live
from rich.table import Table

from models.artifacts import list_versions, load_bundle, promote, resolve, save_bundle
from models.dataset import to_events, to_label_events
from models.features import FeatureEngine
from models.offline import OfflineFeatures
from models.simulator import SimConfig, simulate
from models.training import TrainConfig, train_models
from models.units import DAY_MS
from stream.config import Settings, load_settings
from stream.kafka.schema_registry import codec_for
from stream.kafka.topics import delete_topics, ensure_topics, pipeline_topics
from stream.ops.feed import produce_stream
from stream.ops.liveview import LiveStats
from stream.state.connection import redis_client
from stream.state.featurestore import RedisFeatureStore

WARM_UP_S = 5.0  # traffic before timing starts
MAX_LIVE_DAYS = 20  # of the 60 simulated; the rest is history


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


def _live_days(tx: pd.DataFrame, wanted: int) -> tuple[int, int]:
    """(cut, days): stream the last `days` simulated days, enough for `wanted` transactions
    while 35 days stay behind as history; `cut` is the last historical event time."""
    end = int(tx["event_time"].max())
    for days in range(1, MAX_LIVE_DAYS + 1):
        cut = end - days * DAY_MS
        if int((tx["event_time"] > cut).sum()) >= wanted:
            break
    return cut, days


def cleanup(settings: Settings, topics: list[str], groups: list[str]) -> tuple[int, int]:
    """Delete a demo run's topics, consumer groups and Redis keys; (topics, keys) deleted."""
    deleted = delete_topics(settings.kafka, topics, timeout_s=15)
    admin = AdminClient(settings.kafka.admin_config())
    for fut in admin.delete_consumer_groups(groups, request_timeout=15).values():
        with contextlib.suppress(KafkaException):  # a group never created (nothing committed yet)
            fut.result()
    client = redis_client(settings.redis)
    keys = 0
    ns = settings.redis.namespace
    for pattern in (f"fs:{ns}:*", f"hb:{ns}:*", f"pm:{ns}:*"):
        batch = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(batch), 500):
            keys += int(client.delete(*batch[i : i + 500]) or 0)
    client.close()
    return deleted, keys


def run_demo(settings: Settings, config: Path | None, rate: float, seconds: float, console: Console) -> int:
    """Run the demo; returns the exit code (130 after Ctrl-C, which also cleans up)."""
    ensure_model(settings, console)
    bundle = load_bundle(resolve(settings.model.dir, settings.model.version), deep=False)
    version = bundle.version
    run_id = time.strftime("%Y%m%d%H%M%S")
    flow = {k: f"demo.{run_id}.{k}" for k in ("transactions", "ambiguous", "decisions", "labels", "dlq", "shadow")}
    groups = [f"demo-{run_id}-{kind}" for kind in ("scorer", "deep", "labels", "view")]
    env = {
        **os.environ,
        "FRAUDSTREAM_KAFKA__TOPICS": "{" + ", ".join(f"{k}: {v}" for k, v in flow.items()) + "}",
        "FRAUDSTREAM_REDIS__NAMESPACE": f"demo-{run_id}",
        "FRAUDSTREAM_MODEL__DIR": str(settings.model.dir),
        "FRAUDSTREAM_MODEL__VERSION": version,
        "FRAUDSTREAM_SCORER__GROUP_ID": groups[0],
        "FRAUDSTREAM_DEEP__GROUP_ID": groups[1],
        "FRAUDSTREAM_LABELS__GROUP_ID": groups[2],
    }
    run_settings = load_settings(config, env)
    ensure_topics(run_settings.kafka, pipeline_topics(run_settings.kafka))

    sim = simulate(SimConfig(seed=0))
    tx = sim.transactions
    wanted = int(rate * (seconds + WARM_UP_S))
    cut, days = _live_days(tx, wanted)
    history, live = tx[tx["event_time"] <= cut], tx[tx["event_time"] > cut]
    live = live.iloc[:wanted]
    if len(live) < wanted:
        console.print(
            f"[yellow]the last {days} simulated days hold {len(live):,} transactions: streaming them all "
            f"({len(live) / rate:.0f} s at {rate:.0f}/s, not {seconds + WARM_UP_S:.0f} s)[/yellow]"
        )
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
            # their own session: a terminal's Ctrl-C reaches the demo only, which stops each service once
            procs.append(
                subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", "stream", kind], env=env, stdout=log, stderr=log, start_new_session=True
                )
            )
    with console.status("waiting for the services to join their groups and the scorer to see the deep worker"):
        _wait_until_ready(logs / "score.log", logs / "deep.log", procs)
    console.print(
        f"services started (logs in {logs}/); model {version}; streaming {len(live):,} transactions at {rate:.0f}/s, "
        f"latency timed after the first {WARM_UP_S:.0f} s; Ctrl-C stops, summarises and cleans up"
    )

    events = to_events(live)
    labels = to_label_events(sim.labels[sim.labels["label_time"] > cut])
    sent = [0]
    stopping = threading.Event()
    feeder = threading.Thread(
        target=produce_stream,
        args=(run_settings.kafka, events, rate, labels),
        kwargs={"on_progress": lambda n: sent.__setitem__(0, n), "stop": stopping.is_set},
    )
    codec = codec_for(run_settings.kafka)
    consumer = Consumer(run_settings.kafka.consumer_config(groups[3]))
    consumer.subscribe([run_settings.kafka.topics.decisions])
    stats = LiveStats(WARM_UP_S)
    decided: dict[str, str] = {}
    started = time.monotonic()
    feeder.start()
    deadline = started + len(events) / rate + 120
    interrupted = False
    try:
        with Live(stats.view(0, len(events)), console=console, refresh_per_second=4) as live_view:
            while len(decided) < len(events) and time.monotonic() < deadline:
                # a short wait: a decision is timed when it arrives, not when a full poll returns
                batch = codec.decode_messages("Decision", [m for m in consumer.consume(1000, 0.02) if m.error() is None])
                for d in batch.oks:
                    v = d.value
                    decided[v["transaction_id"]] = v["decision"]
                    stats.add(v["route"], v["decision"], v["decided_at"], v["latency_ms"])
                live_view.update(stats.view(sent[0], len(events)))
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: stopping the feed and the services[/yellow]")
    finally:
        stopping.set()
        feeder.join()
        consumer.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(60) for p in procs]
    console.print(_summary(live, decided, stats, sent[0] if interrupted else len(events), time.monotonic() - started, codes))
    if interrupted:
        n_topics, n_keys = cleanup(run_settings, list(flow.values()), groups)
        console.print(f"cleaned up: {n_topics} topics, {n_keys:,} Redis keys of namespace {run_settings.redis.namespace}")
        return 130
    complete = len(decided) == len(events)
    if not complete:
        console.print(f"[red]{len(events) - len(decided)} transactions without a decision before the deadline[/red]")
    return 0 if complete and all(c == 0 for c in codes) else 1


def _summary(live: pd.DataFrame, decided: dict[str, str], stats: LiveStats, sent: int, elapsed: float, codes: list[int]) -> Table:
    ids = live["transaction_id"].to_numpy()[:sent]
    y = live["is_fraud"].to_numpy()[:sent]
    flagged = np.array([decided.get(i, "MISSING") in ("REVIEW", "BLOCK") for i in ids], dtype=bool)
    blocked = np.array([decided.get(i) == "BLOCK" for i in ids], dtype=bool)
    p = stats.percentiles()
    summary = Table(title="summary")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    rows = [
        ("transactions sent", f"{sent:,}"),
        ("decisions received (one per transaction)", f"{len(decided):,}"),
        ("throughput", f"{len(decided) / max(elapsed, 1e-6):,.0f} decisions/s"),
        (
            f"latency to a read_committed consumer, after {WARM_UP_S:.0f} s: p50 / p99 / max",
            "-" if p is None else f"{p[0]:.0f} / {p[1]:.0f} / {p[2]:.0f} ms",
        ),
        ("frauds in the stream", f"{int(y.sum())}"),
        ("frauds caught (REVIEW or BLOCK)", f"{int((y & flagged).sum())} ({(y & flagged).sum() / max(y.sum(), 1):.1%})"),
        ("BLOCK precision", f"{(y & blocked).sum() / max(blocked.sum(), 1):.1%} of {int(blocked.sum())}"),
        ("legitimate sent to review", f"{(~y & flagged & ~blocked).sum() / max((~y).sum(), 1):.2%}"),
        ("service exit codes", ", ".join(str(c) for c in codes)),
    ]
    for measure, value in rows:
        summary.add_row(measure, value)
    return summary
