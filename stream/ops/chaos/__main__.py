"""`python -m stream.ops.chaos`: a model, events, a run, the table and the JSON report."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import stream.ops.chaos as package
from stream.ops.chaos.run import Chaos


def training_data(seed: int = 7) -> tuple[Any, Any]:
    """The simulation the chaos feed draws from (the e2e tier's: 2,500 customers, 35 days)."""
    from models.simulator import SimConfig, simulate

    sim = simulate(SimConfig(n_customers=2500, n_terminals=600, days=35, seed=seed))
    return sim.transactions, sim.labels


def prepare_model(root: Path) -> str:
    """Train the chaos run's model once into `root` (reused by later runs); returns its version."""
    from models.artifacts import save_bundle
    from models.training import TrainConfig, train_models

    if (root / "v1" / "manifest.json").exists():
        return "v1"
    tx, labels = training_data()
    result = train_models(tx, labels, TrainConfig(seed=7, replicates=0))  # intervals: not what the chaos run looks at
    save_bundle(root / "v1", result.booster, result.deep, result.mlp_only, result.thresholds, {**result.extra})
    return "v1"


def events_for(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The last n transactions of the simulation and the labels that fall among them."""
    from models.dataset import to_events, to_label_events

    tx, labels = training_data()
    part = tx.iloc[-n:]
    events = to_events(part)
    first = int(part["event_time"].min())
    lab = [x for x in to_label_events(labels) if int(x["label_time"]) >= first]
    return events, lab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.ops.chaos", description=(package.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=150.0, help="transactions per second")
    parser.add_argument("--short", action="store_true", help="every fault class once, then stop")
    parser.add_argument("--processing", choices=("exactly_once", "at_least_once"), default="exactly_once")
    parser.add_argument("--out", type=Path, default=Path("out/chaos"))
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: the services, the broker and Redis are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    print(f"chaos: seed {args.seed}, {args.minutes} min, {args.rate}/s, {args.processing}", flush=True)
    model_root = Path(".cache/chaos-model")
    version = prepare_model(model_root)
    n = int(args.rate * (args.minutes * 60 + 600)) if not args.short else int(args.rate * 900)
    events, labels = events_for(n)
    work = args.out / f"seed-{args.seed}-{time.strftime('%Y%m%d%H%M%S')}"
    chaos = Chaos(args.seed, args.minutes, work, model_root, version, events, labels, args.rate, args.processing, args.short)
    report = chaos.run(lambda line: print(line, flush=True))
    print(report.table())
    (work / "report.json").write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    print(f"chaos: report in {work / 'report.json'}, service logs in {work / 'logs'}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
