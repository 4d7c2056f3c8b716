"""The evaluation table over several seeds, as mean ± std (the table in docs/models.md).

python -m models.seeds --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from models.simulator import SimConfig, simulate
from models.training import TrainConfig, train_models

METRICS = ("auc_roc", "average_precision", "card_precision_at_100", "recall_at_budget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rows: dict[str, dict[str, list[float]]] = {}
    seconds = []
    for seed in args.seeds:
        t = time.perf_counter()
        sim = simulate(SimConfig(seed=seed))
        result = train_models(sim.transactions, sim.labels, TrainConfig(seed=seed))
        seconds.append(time.perf_counter() - t)
        for model, row in result.table.items():
            for k in METRICS:
                rows.setdefault(model, {}).setdefault(k, []).append(row[k])
    lines = ["| model | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for model, metrics in rows.items():
        cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in (metrics[k] for k in METRICS)]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append(f"\nseeds {args.seeds}; simulate + train per seed: {np.mean(seconds):.0f} s mean on this machine")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "seconds": seconds}, f, indent=2)


if __name__ == "__main__":
    main()
