"""Interleaved A/B rounds of the end-to-end latency measurement: the way to tell a change
from the noise of a shared host. Each variant changes settings through the environment
and/or runs another checkout's stages; rounds alternate between variants on one broker,
after the bench's broker warm-up and one untimed round.

    python -m bench.ab --variant wait2=FRAUDSTREAM_SCORER__BATCH__MAX_WAIT_MS=2 --rounds 6
    python -m bench.ab --variant before@../fraudstream-old --rounds 5

A variant is NAME=KEY=VALUE[,KEY=VALUE...] (settings) or NAME@DIR (the stages from the
checkout in DIR, run with its own code), or NAME@DIR=KEY=VALUE,... for both. The baseline
`base` (this checkout, its defaults) always runs. Prints p50/p99 and each process's CPU per
round, then every variant's p99 values and their median; writes bench/results/ab-<time>.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.__main__ import Bench, Variant, latency, warm_broker, write_results
from stream.config import load_settings


def parse_variant(text: str) -> Variant:
    """NAME=K=V,K=V | NAME@DIR | NAME@DIR=K=V,K=V."""
    head, _, assignments = text.partition("=")
    name, _, code = head.partition("@")
    if not name.isidentifier():
        raise argparse.ArgumentTypeError(f"variant name {name!r}: letters, digits and _ only")
    env: dict[str, str] = {}
    for item in filter(None, assignments.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"variant {name}: {item!r} is not KEY=VALUE")
        env[key] = value
    if code and not (Path(code) / "stream").is_dir():
        raise argparse.ArgumentTypeError(f"variant {name}: {code} is not a fraudstream checkout")
    return Variant(name, env, Path(code).absolute() if code else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", type=parse_variant, action="append", default=[], help="see above; repeatable")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--load", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--mode", choices=("exactly_once", "at_least_once"), default="at_least_once")
    args = parser.parse_args()
    run_id = time.strftime("%Y%m%d%H%M%S")
    b = Bench(load_settings(), 20_000, f"ab{run_id}")
    variants = [Variant("base"), *args.variant]
    out: dict[str, Any] = {"mode": args.mode, "load": args.load, "seconds": args.seconds,
                           "variants": {v.name: {"env": v.env, "code": str(v.code or "")} for v in variants}}  # fmt: skip
    warm_broker(b, out)
    latency(b, {}, args.mode, args.load, 4.0, warm_up=True)
    rounds: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    try:
        for r in range(args.rounds):
            for v in variants:
                res = latency(b, {}, args.mode, args.load, args.seconds, variant=v)
                rounds[v.name].append(res)
                cpu = "  ".join(f"{k} {share:.2f}" for k, share in res["cpu_share"].items())
                print(f"round {r} {v.name}: p50 {res['p50']:.1f} ms, p99 {res['p99']:.1f} ms; CPU {cpu}", flush=True)
    finally:
        b.cleanup()
    out["rounds"] = rounds
    for name, results in rounds.items():
        p99 = [round(res["p99"], 1) for res in results]
        if p99:
            print(f"{name}: p99 {p99}, median {float(np.median(p99)):.1f} ms")
    write_results("ab", run_id, out)


if __name__ == "__main__":
    main()
