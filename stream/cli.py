"""The `fraudstream` command line."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from models.errors import FraudstreamError
from stream.config import Settings, load_settings
from stream.infra import run_infra
from stream.logs import configure

app = typer.Typer(help="Real-time fraud detection on Kafka.", no_args_is_help=True, add_completion=False)
models_app = typer.Typer(help="Model versions.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file")]


def _settings(config: Path | None) -> Settings:
    try:
        settings = load_settings(config)
    except FraudstreamError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    configure(settings.log_format, settings.log_level)
    return settings


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


@app.command()
def up() -> None:
    """Start the local Kafka (KRaft) and Redis (deploy/local/infra.sh)."""
    raise typer.Exit(run_infra("up", {**os.environ, "PYTHON": sys.executable}, capture=False).returncode)


@app.command()
def down() -> None:
    """Stop the local Kafka and Redis."""
    raise typer.Exit(run_infra("down", capture=False).returncode)


@app.command()
def topics(config: ConfigOpt = None) -> None:
    """Create the pipeline's topics (those missing) and wait until the broker serves every partition."""
    from stream.topics import ensure_topics, pipeline_topics

    settings = _settings(config)
    try:
        served = ensure_topics(settings.kafka, pipeline_topics(settings.kafka))
    except FraudstreamError as exc:
        raise _fail(exc) from exc
    for name, partitions in served.items():
        console.print(f"{name}: {partitions} partitions, served")


@app.command()
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
    from models.simulator import DAY_MS, SimConfig
    from models.simulator import simulate as run_sim

    sim = run_sim(SimConfig(n_customers=customers, n_terminals=terminals, days=days, seed=seed))
    tx, labels = sim.transactions, sim.labels
    if not to_kafka:
        out.parent.mkdir(parents=True, exist_ok=True)
        tx.to_parquet(out, index=False)
        labels.to_parquet(out.with_name(out.stem + ".labels.parquet"), index=False)
        console.print(f"{len(tx):,} transactions ({tx['is_fraud'].mean():.2%} fraud) -> {out}; {len(labels):,} labels")
        return
    from stream.feed import produce_stream
    from stream.topics import ensure_topics, pipeline_topics

    settings = _settings(config)
    ensure_topics(settings.kafka, pipeline_topics(settings.kafka))
    start = int(tx["event_time"].max()) - last_days * DAY_MS
    live = tx[tx["event_time"] > start]
    try:
        n, nl = produce_stream(settings.kafka, to_events(live), rate, to_label_events(labels[labels["label_time"] > start]))
    except FraudstreamError as exc:
        raise _fail(exc) from exc
    console.print(f"produced {n:,} transactions and {nl:,} labels")


@app.command()
def train(
    out: Annotated[Path | None, typer.Option(help="version folder (default artifacts/v<time>)")] = None,
    data: Annotated[Path | None, typer.Option(help="CSV/Parquet history; without it, simulate")] = None,
    labels: Annotated[Path | None, typer.Option(help="labels file (default: <data>.labels.parquet if present)")] = None,
    columns: Annotated[str, typer.Option(help="column mapping, e.g. 'event_time=ts,amount=amt'")] = "",
    label_delay_days: Annotated[float, typer.Option(help="report delay when the history has no label times")] = 7.0,
    seed: int = 0,
    days: Annotated[int, typer.Option(help="simulated days when no --data")] = 60,
    customers: int = 3000,
) -> None:
    """Train XGBoost + the hybrid MLP, choose thresholds, print the evaluation table."""
    from models.artifacts import save_bundle
    from models.dataset import ColumnMap, fingerprint, labels_from_history, normalise, read_table
    from models.simulator import SimConfig
    from models.simulator import simulate as run_sim
    from models.training import TrainConfig, train_models

    try:
        if data is None:
            sim_cfg = SimConfig(days=days, n_customers=customers, seed=seed)
            sim = run_sim(sim_cfg)
            source: dict[str, object] = {"simulated": sim_cfg.to_dict()}
            tx, lab = sim.transactions, sim.labels
        else:
            tx = normalise(read_table(data), ColumnMap.parse(columns) if columns else None)
            lab_file = labels or data.with_name(data.stem + ".labels.parquet")
            lab = read_table(lab_file) if lab_file.exists() else labels_from_history(tx, label_delay_days)
            source = {"file": str(data)}
        version_dir = out or Path("artifacts") / datetime.now(UTC).strftime("v%Y%m%d-%H%M%S")
        with console.status("training") as status:
            result = train_models(tx, lab, TrainConfig(seed=seed), progress=lambda m: status.update(m))
        save_bundle(version_dir, result.booster, result.deep, result.mlp_only, result.thresholds,
                    {"metrics": result.table, "data": {"fingerprint": fingerprint(tx), **source}, **result.extra})  # fmt: skip
    except FraudstreamError as exc:
        raise _fail(exc) from exc
    print_table(result.table)
    console.print(f"thresholds: {result.thresholds.to_dict()}")
    console.print(f"deployed cascade on test: {json.dumps({k: round(v, 4) for k, v in result.extra['cascade_test'].items()})}")
    console.print(f"saved {version_dir} in {result.extra['timings_s']['total']:.0f} s")


def print_table(table: dict[str, dict[str, float]]) -> None:
    t = Table(title="evaluation on the test period")
    cols = ["auc_roc", "average_precision", "card_precision_at_100", "recall_at_budget"]
    t.add_column("model")
    for c in cols:
        t.add_column(c, justify="right")
    for name, row in table.items():
        t.add_row(name, *(f"{row[c]:.4f}" for c in cols))
    console.print(t)


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option(help="a version folder")],
    data: Annotated[Path, typer.Option(help="CSV/Parquet with is_fraud")],
    labels: Annotated[Path | None, typer.Option()] = None,
    columns: str = "",
    label_delay_days: float = 7.0,
) -> None:
    """The evaluation table of a saved model on other data."""
    from models.artifacts import load_bundle
    from models.dataset import ColumnMap, labels_from_history, normalise, read_table
    from models.training import compute_features, evaluate_scores

    try:
        bundle = load_bundle(model)
        tx = normalise(read_table(data), ColumnMap.parse(columns) if columns else None)
        lab_file = labels or data.with_name(data.stem + ".labels.parquet")
        lab = read_table(lab_file) if lab_file.exists() else labels_from_history(tx, label_delay_days)
        delay = int(bundle.manifest.get("train_config", {}).get("delay_days", 7))
        x = compute_features(tx, lab, delay)
        table, cascade = evaluate_scores(tx, x, bundle.booster, bundle.net, bundle.mlp_only, bundle.thresholds, 0.01)
    except FraudstreamError as exc:
        raise _fail(exc) from exc
    print_table(table)
    console.print(f"cascade: {json.dumps({k: round(v, 4) for k, v in cascade.items()})}")


@models_app.command("list")
def models_list(root: Path = Path("artifacts")) -> None:
    """List model versions with their test metrics."""
    from models.artifacts import CURRENT, list_versions

    current = (root / CURRENT).read_text().strip() if (root / CURRENT).exists() else None
    t = Table()
    for c in ("version", "created", "trees", "AP xgb", "AP hybrid", "promoted"):
        t.add_column(c)
    for m in list_versions(root):
        ap = m.get("metrics", {})
        t.add_row(str(m.get("version")), str(m.get("created")), str(m.get("n_trees", "?")),
                  f"{ap.get('xgboost', {}).get('average_precision', float('nan')):.4f}",
                  f"{ap.get('hybrid', {}).get('average_precision', float('nan')):.4f}",
                  "*" if m.get("version") == current else "")  # fmt: skip
    console.print(t)


@models_app.command("promote")
def models_promote(version: str, root: Path = Path("artifacts")) -> None:
    """Make VERSION the one running services switch to between batches."""
    from models.artifacts import promote

    try:
        promote(root, version)
    except FraudstreamError as exc:
        raise _fail(exc) from exc
    console.print(f"promoted {version}")


def _serve(kind: str, config: Path | None, instance: str, max_idle_s: float | None) -> None:
    from stream import services
    from stream.stage import StopFlag

    settings = _settings(config)
    # Installed before the (seconds-long) start-up: a SIGTERM during it stops cleanly too.
    stop = StopFlag()
    stop.install()
    try:
        if kind == "score":
            loop = services.scorer_loop(settings, instance=instance)
        elif kind == "deep":
            loop = services.deep_loop(settings, instance=instance)
        else:
            loop = services.labels_loop(settings, instance=instance)
    except FraudstreamError as exc:
        raise _fail(exc) from exc
    # Start-up built a large, long-lived object graph (models, libraries): move it out of
    # the collector's reach so the occasional full collection stays short.
    gc.collect()
    gc.freeze()
    try:
        loop.run(stop, max_idle_s=max_idle_s)
    except FraudstreamError as exc:  # not transient (a failed rewind, a fenced producer): exit 1, restart resumes
        raise _fail(exc) from exc


InstanceOpt = Annotated[str, typer.Option(help="stable instance id (part of the transactional id)")]
IdleOpt = Annotated[float | None, typer.Option(help="exit after this many idle seconds")]


@app.command()
def score(config: ConfigOpt = None, instance: InstanceOpt = "0", exit_when_idle: IdleOpt = None) -> None:
    """Stage 1: the XGBoost scorer."""
    _serve("score", config, instance, exit_when_idle)


@app.command()
def deep(config: ConfigOpt = None, instance: InstanceOpt = "0", exit_when_idle: IdleOpt = None) -> None:
    """Stage 2: the deep worker."""
    _serve("deep", config, instance, exit_when_idle)


@app.command("labels")
def labels_cmd(config: ConfigOpt = None, instance: InstanceOpt = "0", exit_when_idle: IdleOpt = None) -> None:
    """The label consumer."""
    _serve("labels", config, instance, exit_when_idle)


def spawn_services(config: Path | None, env: dict[str, str] | None = None) -> list[subprocess.Popen[bytes]]:
    """Start scorer, deep worker and label consumer as child processes."""
    return [_spawn(cmd, config, env) for cmd in SERVICES]


SERVICES = ("score", "deep", "labels")


def _spawn(cmd: str, config: Path | None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    extra = ["--config", str(config)] if config else []
    return subprocess.Popen([sys.executable, "-m", "stream", cmd, *extra], env=env)  # noqa: S603 - our own entry point


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Both stages and the label consumer on one box, until Ctrl-C. A service that exits
    on its own is restarted (after 1 s, doubling to 60 s while it keeps failing within a
    minute of its start); Ctrl-C or SIGTERM stops them all."""
    _settings(config)
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
                delay[name] = delay[name] * 2 if now - started[name] < 60 else 1.0
                delay[name] = min(delay[name], 60.0)
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


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="transactions per second")] = 800.0,
    seconds: Annotated[float, typer.Option(help="how long to stream")] = 40.0,
    config: ConfigOpt = None,
) -> None:
    """Train if needed, stream simulated traffic through both stages, live view, summary."""
    from stream.demo import run_demo

    settings = _settings(config)
    raise typer.Exit(run_demo(settings, config, rate, seconds, console))


def main() -> None:
    app()


# Operator commands (dlq, backtest, replay, explain, shadow) live in their own module;
# importing it registers them on `app`.
from stream import cli_ops  # noqa: E402, F401
