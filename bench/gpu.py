"""Stage 2's model: rows/s and latency at batch 256/1024/4096 on the CPU (the sequence model
beside the earlier MLP without a sequence, measured in the same run), and on CUDA when there
is a GPU: fp16 and fp32, eager and torch.compile.

Two figures per setting:
- `model`: the network alone on tensors already on the GPU (what the chip does);
- `serving`: the deep worker's own path, `DeviceRunner.scores` — numpy rows in, checked,
  staged in page-locked memory, copied over, scored, probabilities copied back (what stage 2 gets).
The baseline, measured in the same run on the same host: the same serving path on the CPU in fp32,
one torch thread (the deep worker's default `deep.cpu_threads`) and all of the host's cores.

Uses the trained model under `artifacts/` when there is one (else the same architecture, untrained:
speed does not depend on the weights). Run with `python -m bench.gpu`; `python -m bench` calls it too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.deep import DeepArch, HybridNet
from models.featureset import N_FEATURES
from models.sequence import N_SEQ, SEQ_LEN
from models.xgb import LEAF_SLOTS
from stream.stages.runtime import DeviceRunner

BATCHES = (256, 1024, 4096)
RESULTS = Path(__file__).parent / "results"


def _trained_net() -> tuple[HybridNet, str]:
    from models.artifacts import load_bundle

    root = Path(os.environ.get("FRAUDSTREAM_MODEL__DIR", "artifacts"))
    current = root / "CURRENT"
    if current.exists():
        version = current.read_text().strip()
        return load_bundle(root / version).net, f"trained model {version} from {root}"
    net = HybridNet(DeepArch(N_FEATURES, 120, seq_len=SEQ_LEN, seq_fields=N_SEQ, residual=True))
    return net, "untrained model of the default architecture (no artifacts/ here)"


def _latency_ms(step: Callable[[], Any], runs: int = 30) -> float:
    """Median milliseconds of one call, after warm-up."""
    for _ in range(3):
        step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def _rate(step: Callable[[], Any], rows: int, sync: bool, windows: int = 3, min_s: float = 0.4) -> float:
    """Rows per second of `step` after warm-up: the median of `windows` timed windows of at least `min_s` each."""
    for _ in range(5):
        step()
    rates = []
    for _ in range(windows):
        if sync:
            torch.cuda.synchronize()
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < min_s:
            for _ in range(10):
                step()
            n += 10
            if sync:
                torch.cuda.synchronize()
        rates.append(n * rows / elapsed)
    return float(np.median(rates))


def _inputs(net: HybridNet, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    x = rng.normal(size=(batch, net.arch.n_features)).astype(np.float32)
    margin = rng.normal(size=batch).astype(np.float32)
    leaves = rng.integers(0, LEAF_SLOTS, size=(batch, net.arch.n_trees)).astype(np.int32)
    seq = rng.uniform(0, 3, size=(batch, SEQ_LEN * N_SEQ)).astype(np.float32)  # flat, as buffer records carry it
    return x, margin, leaves, seq


def run_cpu(net: HybridNet, out: dict[str, Any]) -> None:
    """The serving path on the CPU, one torch thread (the deep worker's default) and all cores, for
    the sequence model and for the same model without its sequence encoder."""
    rng = np.random.default_rng(0)
    plain = HybridNet(dataclasses.replace(net.arch, seq_len=0, seq_fields=0, residual=False)).eval()
    for batch in BATCHES:
        for label, model in (("sequence", net), ("no_sequence", plain)):
            x, margin, leaves, seq = _inputs(model, batch, rng)
            for threads in (1, os.cpu_count() or 1):
                torch.set_num_threads(threads)
                cpu = DeviceRunner(model, torch.device("cpu"), (batch,), 1.0)
                step = partial(cpu.scores, x, margin, leaves, seq)
                key = f"batch{batch}_cpu_fp32_{threads}threads_{label}"
                out["rows_per_s"][key], out["latency_ms"][key] = _rate(step, batch, False), _latency_ms(step)
                print(f"  {key:<44} {out['rows_per_s'][key]:>12,.0f} rows/s  {out['latency_ms'][key]:8.2f} ms", flush=True)
    torch.set_num_threads(os.cpu_count() or 1)


def run_gpu() -> dict[str, Any]:
    net, source = _trained_net()
    state = net.state_dict()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    out: dict[str, Any] = {"gpu": gpu, "torch": torch.__version__, "model": source,
                           "host_cpus": os.cpu_count(), "rows_per_s": {}, "latency_ms": {}}  # fmt: skip
    print(f"{gpu or 'no GPU: CPU only'}, torch {torch.__version__}, {source}", flush=True)
    run_cpu(net.eval(), out)
    if gpu is None:
        return out
    cuda = torch.device("cuda")
    rng = np.random.default_rng(0)

    def fresh() -> HybridNet:
        copy = HybridNet(net.arch)
        copy.load_state_dict(state)
        return copy.eval()

    def record(key: str, value: float) -> None:
        out["rows_per_s"][key] = value
        print(f"  {key:<34} {value:>14,.0f} rows/s", flush=True)

    for batch in BATCHES:
        x, margin, leaves, seq = _inputs(net, batch, rng)
        steps = torch.from_numpy(seq.reshape(batch, SEQ_LEN, N_SEQ)).to(cuda)
        for fp16 in (True, False):
            for compiled in (False, True):
                name = f"batch{batch}_cuda_{'fp16' if fp16 else 'fp32'}_{'compiled' if compiled else 'eager'}"
                try:
                    runner = DeviceRunner(fresh(), cuda, (batch,), 0.7, fp16=fp16, compile=compiled)
                    runner.warm_up()
                    xt, mt, lt = (torch.from_numpy(a).to(cuda) for a in (x, margin, leaves.astype(np.int64)))

                    record(f"{name}_model", _rate(partial(runner.logits, xt, mt, lt, steps), batch, True))
                    record(f"{name}_serving", _rate(partial(runner.scores, x, margin, leaves, seq), batch, True))
                except Exception as exc:  # a setting that cannot run (say, torch.compile without a compiler) is reported
                    out["rows_per_s"][f"{name}_error"] = f"{type(exc).__name__}: {exc}"
                    print(f"  {name}: failed: {type(exc).__name__}: {exc}", flush=True)
        torch.set_num_threads(os.cpu_count() or 1)
    best = {b: max((v for k, v in out["rows_per_s"].items() if k.startswith(f"batch{b}_cuda") and k.endswith("_serving")
                    and isinstance(v, float)), default=0.0) for b in BATCHES}  # fmt: skip
    one = {b: out["rows_per_s"][f"batch{b}_cpu_fp32_1threads_sequence"] for b in BATCHES}
    out["serving_vs_cpu_1thread"] = {b: best[b] / one[b] for b in BATCHES}
    return out


def cpu_table(out: dict[str, Any]) -> str:
    r, ms, cpus = out["rows_per_s"], out["latency_ms"], out["host_cpus"]
    lines = [f"stage 2 on the CPU, fp32, serving path ({out['model']})", "",
             "| batch | threads | sequence model rows/s | latency ms | without the sequence rows/s | latency ms |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for b in BATCHES:
        for t in sorted({1, cpus}):
            a, z = f"batch{b}_cpu_fp32_{t}threads_sequence", f"batch{b}_cpu_fp32_{t}threads_no_sequence"
            lines.append(f"| {b} | {t} | {r[a]:,.0f} | {ms[a]:.2f} | {r[z]:,.0f} | {ms[z]:.2f} |")
    return "\n".join(lines)


def table(out: dict[str, Any]) -> str:
    r = out["rows_per_s"]
    if out["gpu"] is None:
        return cpu_table(out)
    lines = [cpu_table(out), "", f"{out['gpu']} — stage 2 rows/s ({out['model']})", "",
             "| batch | precision | torch.compile | model on GPU | serving path |", "|---|---|---|---|---|"]  # fmt: skip
    for b in BATCHES:
        for p in ("fp16", "fp32"):
            for c in ("eager", "compiled"):
                k = f"batch{b}_cuda_{p}_{c}"
                model, serving = r.get(f"{k}_model"), r.get(f"{k}_serving")
                cells = [f"{v:,.0f}" if isinstance(v, float) else "failed" for v in (model, serving)]
                lines.append(f"| {b} | {p} | {'yes' if c == 'compiled' else 'no'} | {cells[0]} | {cells[1]} |")
        one, many = r[f"batch{b}_cpu_fp32_1threads_sequence"], r[f"batch{b}_cpu_fp32_{out['host_cpus']}threads_sequence"]
        lines.append(f"| {b} | CPU fp32, 1 / {out['host_cpus']} threads | no | — | {one:,.0f} / {many:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for gpu-<time>.json")
    args = parser.parse_args()
    out = run_gpu()
    text = table(out)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-{time.strftime('%Y%m%d%H%M%S')}.json"
    path.write_text(json.dumps(out | {"table": text}, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
