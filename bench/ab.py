"""Interleaved A/B rounds: the way to tell a change from the noise of a shared host. Each
variant changes settings through the environment and/or runs another checkout's stages;
rounds alternate between variants on one broker, after the bench's broker warm-up.

    python -m bench.ab --variant wait2=FRAUDSTREAM_SCORER__BATCH__MAX_WAIT_MS=2 --rounds 6
    python -m bench.ab --variant before@../fraudstream-old --rounds 5
    python -m bench.ab --part stage1 --variant before@../fraudstream-old --rounds 3
    python -m bench.ab --floor --mode exactly_once --rounds 4

`--part latency` (the default): end-to-end latency at a fixed load, after one untimed round.
With `--floor`, each round also runs the latency floor: the same path with relays that do no
work (`bench.relay`), so a variant's p99 can be read against what the host cost that round.
`--part stage1`: stage 1's throughput draining a prefilled topic (as `make bench` measures
it). In both, another checkout trains its model and warms its feature state with its own code
(the same simulated data and training settings), so two checkouts of different feature sets
or models are each measured doing their own full work; in stage1 rounds `base` does too.

A variant is NAME=KEY=VALUE[,KEY=VALUE...] (settings) or NAME@DIR (the stages from the
checkout in DIR, run with its own code), or NAME@DIR=KEY=VALUE,... for both. The baseline
`base` (this checkout, its defaults) always runs. Prints p50/p99 and each process's CPU per
round, then every variant's p99 values and their median; writes bench/results/ab-<time>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.__main__ import Bench, Variant, code_env, latency, warm_broker, warm_with_code, write_results
from models.features import FeatureEngine
from stream.config import load_settings
from stream.state.featurestore import RedisFeatureStore


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
    parser.add_argument("--part", choices=("latency", "stage1"), default="latency")
    parser.add_argument("--floor", action="store_true",
                        help="latency: also a round of the floor each time (relays doing no work: bench.relay)")  # fmt: skip
    args = parser.parse_args()
    run_id = time.strftime("%Y%m%d%H%M%S")
    settings = load_settings()
    from rich.console import Console

    from stream.ops.demo import ensure_model

    ensure_model(settings, Console())
    b = Bench(settings, 20_000, f"ab{run_id}")
    variants = [Variant("base"), *args.variant]
    if args.part == "stage1":
        stage1(b, variants, args.rounds, run_id)
        return
    # Another checkout's stages read its own model (trained by its code on the same data and
    # settings) and its own feature state (`latency` warms it with that code).
    variants = [v if v.code is None else with_model(v, train_side(b, v)) for v in variants]
    if args.floor:
        variants.append(Variant("floor", relay_share=0.0))  # the share: base's, round by round
    out: dict[str, Any] = {"mode": args.mode, "load": args.load, "seconds": args.seconds,
                           "variants": {v.name: {"env": v.env, "code": str(v.code or "")} for v in variants}}  # fmt: skip
    warm_broker(b, out)
    latency(b, {}, args.mode, args.load, 4.0, warm_up=True)
    rounds: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    try:
        for r in range(args.rounds):
            for v in variants:
                if v.relay_share is not None:  # as many records through the buffer as base sent there this round
                    v = dataclasses.replace(v, relay_share=rounds["base"][-1].get("via_buffer", 0.0))
                res = latency(b, {}, args.mode, args.load, args.seconds, variant=v, run=f"r{r}")
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
    floors = rounds.get("floor", [])
    for name, results in rounds.items():
        above = [round(a["p99"] - f["p99"], 1) for a, f in zip(results, floors, strict=False)]
        if name != "floor" and above:
            out[f"{name}_p99_above_floor_ms"] = above
            print(f"{name} above the floor (p99, round by round): {above}, median {float(np.median(above)):.1f} ms")
    write_results("ab", run_id, out)


def with_model(v: Variant, model: Path) -> Variant:
    """The variant with its stages reading `model` (a version folder)."""
    return Variant(
        v.name, {**v.env, "FRAUDSTREAM_MODEL__DIR": str(model.parent), "FRAUDSTREAM_MODEL__VERSION": model.name}, v.code
    )


def train_side(b: Bench, v: Variant) -> Path:
    """The side's model, trained by its code on the same simulated data and settings."""
    out = b.logs / f"model-{v.name}" / "v1"
    cmd = [sys.executable, "-m", "stream", "train", "--out", str(out), "--seed", "0"]
    with open(b.logs / f"train-{v.name}.log", "wb") as log:
        subprocess.run(cmd, env=code_env(v.code), cwd=v.code, stdout=log, stderr=log, check=True, timeout=1800)
    return out


def stage1(b: Bench, variants: list[Variant], rounds: int, run_id: str) -> None:
    """Stage 1's throughput per side, rounds interleaved, both processing modes."""
    out: dict[str, Any] = {"part": "stage1", "records": b.n, "variants": {}}
    models = {}
    for v in variants:
        t0 = time.monotonic()
        models[v.name] = train_side(b, v)
        out["variants"][v.name] = {"env": v.env, "code": str(v.code or ""), "model": str(models[v.name])}
        print(f"{v.name}: model trained by its code in {time.monotonic() - t0:.0f} s", flush=True)
    warm_broker(b, out)
    per_s: dict[str, list[float]] = {}
    try:
        for r in range(rounds):
            for processing in ("exactly_once", "at_least_once"):
                for v in variants:
                    tag = f"r{r}{processing[:3]}{v.name}"
                    env = {**b.env(tag, processing), **with_model(v, models[v.name]).env}
                    s = b.settings(env, warm=False)
                    warm_with_code(b, s, v.code)
                    b.prefill(s, s.kafka.topics.transactions)
                    store = RedisFeatureStore(redis.Redis.from_url(s.redis.url), s.redis.namespace, 40, FeatureEngine())
                    store.heartbeat("deep", 3600)  # the band goes to the buffer topic, as with a deep stage up
                    store.client.close()
                    b.service("score", env, tag, "--exit-when-idle", "4", code=v.code).wait(600)
                    rep = b.stopped("score", tag)
                    rate = rep["records"] / rep["active_s"]
                    per_s.setdefault(f"{v.name} {processing}", []).append(rate)
                    print(f"round {r} {v.name} {processing}: {rep['records']:,} in {rep['active_s']:.2f} s = {rate:,.0f}/s, "
                          f"peak RSS {rep['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    finally:
        b.cleanup()
    out["per_s"] = per_s
    medians = {k: float(np.median(v)) for k, v in per_s.items()}
    out["median_per_s"] = medians
    for processing in ("exactly_once", "at_least_once"):
        base = medians.get(f"base {processing}")
        for v in variants[1:]:
            other = medians.get(f"{v.name} {processing}")
            if base and other:
                print(f"stage 1 {processing}: base {base:,.0f}/s, {v.name} {other:,.0f}/s: base / {v.name} = {base / other:.2f}x")
                out[f"ratio_{processing}_{v.name}"] = base / other
    write_results("ab-stage1", run_id, out)


if __name__ == "__main__":
    main()
