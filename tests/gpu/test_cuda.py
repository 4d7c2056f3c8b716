"""The deep stage on CUDA (fp16 autocast) against CPU fp32. Run with `make gpu`."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from models.deep import DeepArch, HybridNet
from models.features import N_FEATURES
from stream.runtime import DeviceRunner

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
def test_cuda_fp16_matches_cpu_and_reports_rows_per_second() -> None:
    torch.manual_seed(0)
    n_trees = 120
    net = HybridNet(DeepArch(N_FEATURES, n_trees))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4096, N_FEATURES)).astype(np.float32)
    net.set_scaler(x)
    margin = rng.normal(size=4096).astype(np.float32)
    leaves = rng.integers(0, 127, size=(4096, n_trees)).astype(np.int32)
    cpu = DeviceRunner(HybridNet(net.arch), torch.device("cpu"), (64, 256, 1024), 0.7)
    cpu.net.load_state_dict(net.state_dict())
    gpu = DeviceRunner(net, torch.device("cuda"), (64, 256, 1024), 0.7)
    gpu.warm_up()
    expected = cpu.scores(x, margin, leaves)
    got = gpu.scores(x, margin, leaves)
    np.testing.assert_allclose(got, expected, atol=5e-3)
    start = time.perf_counter()
    for _ in range(20):
        gpu.scores(x, margin, leaves)
    torch.cuda.synchronize()
    rate = 20 * len(x) / (time.perf_counter() - start)
    print(f"{torch.cuda.get_device_name(0)}: {rate:,.0f} rows/s (fp16, padded batches of 1024)")
