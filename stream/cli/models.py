"""Models: train, evaluate, list and promote versions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from stream.cli.app import ConfigOpt, app, command, console, models_app, settings_from


@command(app)
def train(
    out: Annotated[Path | None, typer.Option(help="version folder (default: model.dir/v<time>)")] = None,
    data: Annotated[Path | None, typer.Option(help="CSV/Parquet history; without it, simulate")] = None,
    labels: Annotated[Path | None, typer.Option(help="labels file (default: <data>.labels.parquet if present)")] = None,
    columns: Annotated[str, typer.Option(help="column mapping, e.g. 'event_time=ts,amount=amt'")] = "",
    label_delay_days: Annotated[float, typer.Option(help="report delay when the history has no label times")] = 7.0,
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
    with console.status("training") as status:
        result = train_models(tx, lab, TrainConfig(seed=seed), progress=lambda m: status.update(m))
    save_bundle(
        version_dir,
        result.booster,
        result.deep,
        result.mlp_only,
        result.thresholds,
        {"metrics": result.table, "data": {"fingerprint": fingerprint(tx), **source}, **result.extra},
    )
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


@command(app)
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

    bundle = load_bundle(model)
    tx = normalise(read_table(data), ColumnMap.parse(columns) if columns else None)
    lab_file = labels or data.with_name(data.stem + ".labels.parquet")
    lab = read_table(lab_file) if lab_file.exists() else labels_from_history(tx, label_delay_days)
    x = compute_features(tx, lab, bundle.delay_days)
    table, cascade = evaluate_scores(tx, x, bundle.booster, bundle.net, bundle.mlp_only, bundle.thresholds, 0.01)
    print_table(table)
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
    """Make VERSION (in `model.dir`) the one running services switch to between batches."""
    from models.artifacts import promote

    root = settings_from(config).model.dir
    promote(root, version)
    console.print(f"promoted {version}")
