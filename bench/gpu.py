"""Stage 2 on CUDA: rows/s at batch 256/1024/4096, fp16 and fp32, with and without torch.compile.

Runs only where `torch.cuda.is_available()`; `python -m bench` calls it and reports the GPU's name.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from models.deep import DeepArch, HybridNet
from models.features import N_FEATURES

N_TREES = 120


def _rate(fn: Any, x: torch.Tensor, m: torch.Tensor, lv: torch.Tensor, fp16: bool, repeats: int = 50) -> float:
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=fp16):
        for _ in range(5):
            fn(x, m, lv)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(repeats):
            fn(x, m, lv)
        torch.cuda.synchronize()
    return repeats * len(x) / (time.perf_counter() - t)


def run_gpu() -> dict[str, Any]:
    dev = torch.device("cuda")
    net = HybridNet(DeepArch(N_FEATURES, N_TREES)).to(dev).eval()
    compiled = torch.compile(net)
    out: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "rows_per_s": {}}
    rng = np.random.default_rng(0)
    for batch in (256, 1024, 4096):
        x = torch.as_tensor(rng.normal(size=(batch, N_FEATURES)).astype(np.float32), device=dev)
        m = torch.as_tensor(rng.normal(size=batch).astype(np.float32), device=dev)
        lv = torch.as_tensor(rng.integers(0, 127, size=(batch, N_TREES)), device=dev)
        for fp16 in (True, False):
            for name, fn in (("eager", net), ("compiled", compiled)):
                key = f"batch{batch}_{'fp16' if fp16 else 'fp32'}_{name}"
                out["rows_per_s"][key] = _rate(fn, x, m, lv, fp16)
                print(f"{out['gpu']} {key}: {out['rows_per_s'][key]:,.0f} rows/s", flush=True)
    return out
