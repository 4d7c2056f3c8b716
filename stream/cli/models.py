"""Models: train, evaluate, list and promote versions."""

from __future__ import annotations

import contextlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from models.errors import FraudstreamError
from models.thresholds import BAND_MAX_SHARE
from stream.cli.app import ConfigOpt, app, command, console, models_app, progress, settings_from


@command(app)
def train(
    out: Annotated[Path | None, typer.Option(help="version folder (default: model.dir/v<time>)")] = None,
    data: Annotated[Path | None, typer.Option(help="CSV/Parquet history; without it, simulate")] = None,
    labels: Annotated[Path | None, typer.Option(help="labels file (default: <data>.labels.parquet if present)")] = None,
    columns: Annotated[str, typer.Option(help="column mapping, e.g. 'event_time=ts,amount=amt'")] = "",
    label_delay_days: Annotated[
        float,
        typer.Option(help="days a fraud report takes: label times when the history has none, the feature delay and the gap"),
    ] = 7.0,
    test_days: Annotated[int, typer.Option(help="the last N days are the test period")] = 14,
    gap_days: Annotated[int | None, typer.Option(help="days left out before the test period (default: the label delay)")] = None,
    blend_share: Annotated[float, typer.Option(help="share of the training days the MLPs learn on")] = 0.3,
    band_max_share: Annotated[
        float, typer.Option(min=0.001, max=1.0, help="most of the traffic the ambiguous band (stage 2's load) may hold")
    ] = BAND_MAX_SHARE,
    seed: int = 0,
    days: Annotated[int, typer.Option(help="simulated days when no --data")] = 60,
    customers: int = 3000,
    config: ConfigOpt = None,
) -> None:
    """Train XGBoost + the hybrid MLP, choose thresholds, print the evaluation table."""
    from models.artifacts import save_bundle
    from models.dataset import ColumnMap, fingerprint, labels_from_history, normalise, read_table
    from models.simulator import SimConfig
    from models.simulator import simulate as run_sim
    from models.training import TrainConfig, train_models

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
    version_dir = out or settings_from(config).model.dir / datetime.now(UTC).strftime("v%Y%m%d-%H%M%S")
    delay = max(1, math.ceil(label_delay_days))  # terminal risk reads whole days older than the delay
    cfg = TrainConfig(
        seed=seed, test_days=test_days, delay_days=delay, gap_days=gap_days if gap_days is not None else delay,
        blend_share=blend_share, band_max_share=band_max_share,
    )  # fmt: skip
    with progress("training") as say:
        result = train_models(tx, lab, cfg, progress=say)
    save_bundle(
        version_dir,
        result.booster,
        result.deep,
        result.mlp_only,
        result.thresholds,
        {"metrics": result.table, "data": {"fingerprint": fingerprint(tx), **source}, **result.extra},
    )
    print_table(result.table, result.extra.get("intervals"))
    if result.extra.get("by_scenario"):
        print_scenarios(result.extra["by_scenario"])
    console.print(f"thresholds: {result.thresholds.to_dict()}")
    console.print(f"deployed cascade on test: {json.dumps({k: round(v, 4) for k, v in result.extra['cascade_test'].items()})}")
    print_band_sweep(result.extra["band_sweep"], cfg.band_max_share)
    console.print(
        f"split: test the last {cfg.test_days} days, gap {cfg.gap_days} days, MLPs on {cfg.blend_share:.0%} of the "
        f"training days; feature delay {cfg.delay_days} days"
    )
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in result.extra["timings_s"].items() if k != "total")
    console.print(f"saved {version_dir} in {result.extra['timings_s']['total']:.0f} s ({phases})")


def print_band_sweep(sweep: dict[str, dict[str, float]], deployed: float) -> None:
    """Stage 2's load (the band's share of test traffic) against frauds not approved, per cap."""
    t = Table(title=f"band cap: stage 2's load against caught fraud (test days; paired with the deployed {deployed:g})")
    for c in ("cap", "band share", "frauds caught", "minus deployed"):
        t.add_column(c, justify="right")
    for cap, r in sweep.items():
        d = r["minus_deployed"], r["minus_deployed_low"], r["minus_deployed_high"]
        verdict = "" if float(cap) == deployed else (" noise" if d[1] <= 0 <= d[2] else " *")
        t.add_row(cap, f"{r['band_share']:.1%}", f"{r['fraud_caught']:.1%} [{r['fraud_caught_low']:.1%}, "
                  f"{r['fraud_caught_high']:.1%}]", f"{d[0]:+.1%} [{d[1]:+.1%}, {d[2]:+.1%}]{verdict}")  # fmt: skip
    console.print(t)


def print_scenarios(by_scenario: dict[str, dict[str, Any]]) -> None:
    """Recall at the review budget per fraud scenario (simulated data), with the hybrid's paired difference."""
    t = Table(title="recall at the review budget per scenario, 95% intervals")
    for c in ("scenario", "frauds", "xgboost", "hybrid", "hybrid − xgboost"):
        t.add_column(c, justify="left" if c == "scenario" else "right")
    for kind, row in by_scenario.items():
        x, h, d = row["xgboost"], row["hybrid"], row["hybrid − xgboost"]
        verdict = " noise" if d["low"] <= 0 <= d["high"] else " *"
        cells = [f"{v['point']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for v in (x, h)]
        t.add_row(kind, str(row["frauds"]), *cells, f"{d['point']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]{verdict}")
    console.print(t)


def print_table(table: dict[str, dict[str, float]], intervals: dict[str, Any] | None = None) -> None:
    """The evaluation table; with intervals, each cell's 95% card-bootstrap interval and each
    model's paired difference from XGBoost (a difference whose interval holds 0 is noise)."""
    n = (
        f", 95% intervals: {intervals['replicates']} card-bootstrap replicates over {intervals['cards']:,} cards"
        if intervals
        else ""
    )
    t = Table(title=f"evaluation on the test period{n}")
    cols = ["auc_roc", "average_precision", "card_precision_at_100", "recall_at_budget"]
    t.add_column("model")
    for c in cols:
        t.add_column(c, justify="right")

    def cell(row: dict[str, Any] | None, value: float, signed: bool = False) -> str:
        shown = f"{value:+.4f}" if signed else f"{value:.4f}"
        if row is None:
            return shown
        verdict = "" if not signed else (" noise" if row["low"] <= 0 <= row["high"] else " *")
        return (
            f"{shown} [{row['low']:+.4f}, {row['high']:+.4f}]{verdict}"
            if signed
            else f"{shown} [{row['low']:.4f}, {row['high']:.4f}]"
        )

    for name, row in table.items():
        ci = (intervals or {}).get("metrics", {}).get(name, {})
        t.add_row(name, *(cell(ci.get(c), row[c]) for c in cols))
    for name, diff in (intervals or {}).get("differences", {}).items():
        t.add_row(f"{name} − xgboost", *(cell(diff[c], diff[c]["point"], signed=True) for c in cols))
    console.print(t)
    if intervals:
        console.print("* the difference's interval excludes 0; noise: it does not")


@command(app)
def evaluate(
    model: Annotated[Path, typer.Option(help="a version folder")],
    data: Annotated[Path, typer.Option(help="CSV/Parquet with is_fraud")],
    labels: Annotated[Path | None, typer.Option()] = None,
    columns: str = "",
    label_delay_days: float = 7.0,
    out: Annotated[Path | None, typer.Option(help="also write each transaction's scores, route and decision (CSV)")] = None,
    replicates: Annotated[int, typer.Option(help="card-bootstrap replicates for the intervals (0: none)")] = 200,
) -> None:
    """The evaluation table of a saved model on other data."""
    from models.artifacts import load_bundle
    from models.dataset import ColumnMap, labels_from_history, normalise, read_table
    from models.intervals import card_bootstrap
    from models.scoring import evaluate_scores, model_scores, transaction_scores
    from models.training import compute_rows

    bundle = load_bundle(model)
    tx = normalise(read_table(data), ColumnMap.parse(columns) if columns else None)
    lab_file = labels or data.with_name(data.stem + ".labels.parquet")
    lab = read_table(lab_file) if lab_file.exists() else labels_from_history(tx, label_delay_days)
    x = compute_rows(tx, lab, bundle.delay_days)
    table, cascade = evaluate_scores(tx, x, bundle.booster, bundle.net, bundle.mlp_only, bundle.thresholds, 0.01)
    intervals = None
    if replicates:
        scores = model_scores(x, bundle.booster, bundle.net, bundle.mlp_only)
        y = tx["is_fraud"].to_numpy().astype(bool)
        boot = card_bootstrap(y, scores, tx["event_time"].to_numpy(), tx["customer_id"].to_numpy(), replicates=replicates)
        intervals = boot.to_dict()
    print_table(table, intervals)
    if out is not None:
        scores = transaction_scores(tx, x, bundle.booster, bundle.net, bundle.thresholds)
        scores.to_csv(out, index=False)
        console.print(f"wrote {len(scores):,} transactions' scores to {out}")
    console.print(f"cascade: {json.dumps({k: round(v, 4) for k, v in cascade.items()})}")


@command(models_app, "list")
def models_list(config: ConfigOpt = None) -> None:
    """List the versions in `model.dir` with their test metrics."""
    from models.artifacts import CURRENT, list_versions

    root = settings_from(config).model.dir
    current = (root / CURRENT).read_text().strip() if (root / CURRENT).exists() else None
    t = Table()
    for c in ("version", "created", "trees", "AP xgb", "AP hybrid", "promoted"):
        t.add_column(c)
    for m in list_versions(root):
        ap = m.get("metrics", {})
        t.add_row(
            str(m.get("version")),
            str(m.get("created")),
            str(m.get("n_trees", "?")),
            f"{ap.get('xgboost', {}).get('average_precision', float('nan')):.4f}",
            f"{ap.get('hybrid', {}).get('average_precision', float('nan')):.4f}",
            "*" if m.get("version") == current else "",
        )
    console.print(t)


@command(models_app, "promote")
def models_promote(version: str, config: ConfigOpt = None) -> None:
    """Make VERSION (in `model.dir`) the one running services switch to between batches; shows
    its test metrics against the version it replaces (each measured on its own test period)."""
    from models.artifacts import CURRENT, MANIFEST, promote, version_path

    root = settings_from(config).model.dir
    before = (root / CURRENT).read_text().strip() if (root / CURRENT).exists() else None
    promote(root, version)
    console.print(f"promoted {version}" + (f" (was {before})" if before else ""))
    manifests = {}
    for v in {before, version} - {None}:
        with contextlib.suppress(OSError, ValueError, FraudstreamError):  # the replaced one may be gone or damaged
            manifests[v] = json.loads((version_path(root, str(v)) / MANIFEST).read_text())
    if before and before != version and before in manifests and version in manifests:
        t = Table(title=f"test metrics: {before} → {version}")
        for c in ("model", "metric", before, version, "change"):
            t.add_column(c, justify="right" if c not in ("model", "metric") else "left")
        old, new = manifests[before].get("metrics", {}), manifests[version].get("metrics", {})
        for model in ("xgboost", "hybrid"):
            for metric in ("auc_roc", "average_precision", "card_precision_at_100", "recall_at_budget"):
                a, b = old.get(model, {}).get(metric), new.get(model, {}).get(metric)
                if a is None or b is None:
                    continue
                t.add_row(model, metric, f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}")
        console.print(t)
        if manifests[before].get("data", {}).get("fingerprint") != manifests[version].get("data", {}).get("fingerprint"):
            console.print("the two versions were trained and tested on different data: compare with a backtest")
