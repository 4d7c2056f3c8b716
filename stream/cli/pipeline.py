"""Running the pipeline: local infrastructure, topics, the three services, the demo."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from stream.cli.app import ConfigOpt, IdleOpt, InstanceOpt, app, command, console, settings_from, state_app
from stream.config import load_settings
from stream.infra import run_infra

SERVICES = ("score", "deep", "labels")


@command(app)
def up() -> None:
    """Start the local Kafka (KRaft) and Redis (deploy/local/infra.sh)."""
    raise typer.Exit(run_infra("up", {**os.environ, "PYTHON": sys.executable}, capture=False).returncode)


@command(app)
def down() -> None:
    """Stop the local Kafka and Redis."""
    raise typer.Exit(run_infra("down", capture=False).returncode)


@command(app)
def topics(config: ConfigOpt = None) -> None:
    """Create the pipeline's topics (those missing) and wait until the broker serves every partition."""
    from stream.kafka.topics import ensure_topics, pipeline_topics

    settings = settings_from(config)
    for name, partitions in ensure_topics(settings.kafka, pipeline_topics(settings.kafka)).items():
        console.print(f"{name}: {partitions} partitions, served")


@command(state_app, "migrate")
def state_migrate(config: ConfigOpt = None) -> None:
    """Build the fs2 cards from the fs1 histories (scorers stopped): stream/state/migration.py."""
    from stream.state.connection import redis_client
    from stream.state.migration import migrate_fs1

    settings = settings_from(config)
    n = migrate_fs1(redis_client(settings.redis), settings.redis.namespace, settings.redis.ttl_days)
    console.print(f"built {n:,} fs2 cards in namespace {settings.redis.namespace}")


@command(app)
def simulate(
    out: Annotated[Path, typer.Option(help="Parquet file for transactions; labels go beside it")] = Path(
        "data/transactions.parquet"
    ),
    days: int = 60,
    customers: int = 3000,
    terminals: int = 800,
    seed: int = 0,
    to_kafka: Annotated[bool, typer.Option("--to-kafka", help="produce to the transactions topic")] = False,
    rate: Annotated[float, typer.Option(help="transactions per second with --to-kafka (0 = max)")] = 500.0,
    last_days: Annotated[int, typer.Option(help="with --to-kafka: only the last N days")] = 1,
    config: ConfigOpt = None,
) -> None:
    """Simulate a transaction history with tagged fraud scenarios and late labels."""
    from models.dataset import to_events, to_label_events
    from models.simulator import SimConfig
    from models.simulator import simulate as run_sim
    from models.units import DAY_MS

    sim = run_sim(SimConfig(n_customers=customers, n_terminals=terminals, days=days, seed=seed))
    tx, labels = sim.transactions, sim.labels
    if not to_kafka:
        out.parent.mkdir(parents=True, exist_ok=True)
        tx.to_parquet(out, index=False)
        labels.to_parquet(out.with_name(out.stem + ".labels.parquet"), index=False)
        console.print(f"{len(tx):,} transactions ({tx['is_fraud'].mean():.2%} fraud) -> {out}; {len(labels):,} labels")
        return
    from stream.kafka.topics import ensure_topics, pipeline_topics
    from stream.ops.feed import produce_stream

    settings = settings_from(config)
    ensure_topics(settings.kafka, pipeline_topics(settings.kafka))
    start = int(tx["event_time"].max()) - last_days * DAY_MS
    live = tx[tx["event_time"] > start]
    n, nl = produce_stream(settings.kafka, to_events(live), rate, to_label_events(labels[labels["label_time"] > start]))
    console.print(f"produced {n:,} transactions and {nl:,} labels")


def _serve(kind: str, config: Path | None, instance: str, max_idle_s: float | None) -> None:
    from stream import services
    from stream.kafka.lifecycle import StopFlag

    settings = settings_from(config)
    # Installed before the (seconds-long) start-up: a SIGTERM during it stops cleanly too.
    stop = StopFlag()
    stop.install()
    build = {"score": services.scorer_loop, "deep": services.deep_loop, "labels": services.labels_loop}[kind]
    loop = build(settings, instance=instance)
    # Start-up built a large, long-lived object graph (models, libraries): move it out of
    # the collector's reach so the occasional full collection stays short.
    gc.collect()
    gc.freeze()
    # A FraudstreamError from here is not transient (a failed rewind, lost offsets): exit 1,
    # and the restart resumes from the committed offsets.
    loop.run(stop, max_idle_s=max_idle_s)


@command(app)
def score(config: ConfigOpt = None, instance: InstanceOpt = "0", exit_when_idle: IdleOpt = None) -> None:
    """Stage 1: the XGBoost scorer."""
    _serve("score", config, instance, exit_when_idle)


@command(app)
def deep(config: ConfigOpt = None, instance: InstanceOpt = "0", exit_when_idle: IdleOpt = None) -> None:
    """Stage 2: the deep worker."""
    _serve("deep", config, instance, exit_when_idle)


@command(app, "labels")
def labels_cmd(config: ConfigOpt = None, instance: InstanceOpt = "0", exit_when_idle: IdleOpt = None) -> None:
    """The label consumer."""
    _serve("labels", config, instance, exit_when_idle)


def spawn_services(config: Path | None, env: dict[str, str] | None = None) -> list[subprocess.Popen[bytes]]:
    """Start scorer, deep worker and label consumer as child processes."""
    return [_spawn(cmd, config, env) for cmd in SERVICES]


def service_env(cmd: str, config: Path | None, env: dict[str, str] | None = None) -> dict[str, str]:
    """A child's environment: with `metrics.port` set, service i of SERVICES serves on port + i
    (three processes cannot share one port)."""
    base = dict(os.environ if env is None else env)
    port = load_settings(config, base).metrics.port
    if port:
        base["FRAUDSTREAM_METRICS__PORT"] = str(port + SERVICES.index(cmd))
    return base


def _spawn(cmd: str, config: Path | None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    extra = ["--config", str(config)] if config else []
    child = service_env(cmd, config, env)
    return subprocess.Popen([sys.executable, "-m", "stream", cmd, *extra], env=child)  # noqa: S603 - our own entry point


@command(app)
def run(config: ConfigOpt = None) -> None:
    """Both stages and the label consumer on one box, until Ctrl-C. A service that exits
    on its own is restarted (after 1 s, doubling to 60 s while it keeps failing within a
    minute of its start); Ctrl-C or SIGTERM stops them all."""
    settings_from(config)
    procs = dict(zip(SERVICES, spawn_services(config), strict=True))
    started = dict.fromkeys(SERVICES, time.monotonic())
    delay = dict.fromkeys(SERVICES, 1.0)
    due: dict[str, float] = {}
    stopping = [False]

    def on_term(_signum: int, _frame: object) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        while not stopping[0]:
            now = time.monotonic()
            for name, p in procs.items():
                if p.poll() is None or name in due:
                    continue
                delay[name] = min(delay[name] * 2 if now - started[name] < 60 else 1.0, 60.0)
                due[name] = now + delay[name]
                console.print(f"{name} exited with {p.returncode}; restarting in {delay[name]:.0f} s")
            for name, at in list(due.items()):
                if now >= at:
                    del due[name]
                    procs[name], started[name] = _spawn(name, config), now
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    raise typer.Exit(max((p.returncode or 0) for p in procs.values()))


@command(app)
def demo(
    rate: Annotated[float, typer.Option(help="transactions per second")] = 800.0,
    seconds: Annotated[float, typer.Option(help="how long to stream")] = 40.0,
    config: ConfigOpt = None,
) -> None:
    """Train if needed, stream simulated traffic through both stages, live view, summary."""
    from stream.ops.demo import run_demo

    settings = settings_from(config)
    raise typer.Exit(run_demo(settings, config, rate, seconds, console))
