"""The evaluation table over several seeds (the table in docs/models.md): per seed every
metric with its 95% card-bootstrap interval and each model's paired difference from XGBoost
(`models.intervals`), each scenario's recall at the review budget with the hybrid's paired
difference, then the mean ± std over seeds.

python -m models.seeds --seeds 0 1 2 [--replicates 200]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from models.simulator import SimConfig, simulate
from models.training import TrainConfig, train_models

METRICS = ("auc_roc", "average_precision", "card_precision_at_100", "recall_at_budget")


def _difference(d: dict[str, float]) -> str:
    text = f"{d['point']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
    return f"**{text}**" if d["low"] > 0 or d["high"] < 0 else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rows: dict[str, dict[str, list[float]]] = {}
    seconds = []
    per_seed = ["| seed | model | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 2) + "|"]
    intervals = {}
    scenarios = ["", "| seed | scenario | frauds | xgboost | hybrid | hybrid − xgboost |", "|---" * 6 + "|"]
    for seed in args.seeds:
        t = time.perf_counter()
        sim = simulate(SimConfig(seed=seed))
        result = train_models(sim.transactions, sim.labels, TrainConfig(seed=seed, replicates=args.replicates))
        seconds.append(time.perf_counter() - t)
        for model, row in result.table.items():
            for k in METRICS:
                rows.setdefault(model, {}).setdefault(k, []).append(row[k])
        ci = result.extra["intervals"]
        intervals[seed] = ci
        for model, row in ci["metrics"].items():
            cells = [f"{row[k]['point']:.3f} [{row[k]['low']:.3f}, {row[k]['high']:.3f}]" for k in METRICS]
            per_seed.append(f"| {seed} | {model} | " + " | ".join(cells) + " |")
        for model, row in ci["differences"].items():
            cells = [_difference(row[k]) for k in METRICS]
            per_seed.append(f"| {seed} | {model} − xgboost | " + " | ".join(cells) + " |")
        for kind, row in (result.extra["by_scenario"] or {}).items():
            x, h = row["xgboost"], row["hybrid"]
            cells = [f"{v['point']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for v in (x, h)]
            scenarios.append(
                f"| {seed} | {kind} | {row['frauds']} | {' | '.join(cells)} | {_difference(row['hybrid − xgboost'])} |"
            )
    lines = [*per_seed, *scenarios, "", "| model | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for model, metrics in rows.items():
        cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in (metrics[k] for k in METRICS)]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nseeds {args.seeds}; intervals: 95%, {args.replicates} card-bootstrap replicates, paired; "
        f"**bold**: the difference's interval excludes 0; simulate + train per seed: {np.mean(seconds):.0f} s mean"
    )
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "intervals": intervals, "seconds": seconds}, f, indent=2)


if __name__ == "__main__":
    main()
