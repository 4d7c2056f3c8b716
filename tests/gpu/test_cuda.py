"""The deep stage on CUDA against CPU fp32: fp16 and fp32, eager and torch.compile,
batches that need padding and batches longer than the largest padded size. Run with `make gpu`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.deep import DeepArch, HybridNet
from models.featureset import N_FEATURES
from models.sequence import N_SEQ, SEQ_LEN
from models.xgb import LEAF_SLOTS
from stream.stages.runtime import DeviceRunner

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")]

PADS = (64, 256, 1024)


@pytest.mark.parametrize(("fp16", "compile", "atol"), [(True, False, 5e-3), (False, False, 1e-5), (True, True, 5e-3)])
def test_cuda_scores_match_cpu(fp16: bool, compile: bool, atol: float) -> None:
    torch.manual_seed(0)
    n_trees = 120
    net = HybridNet(DeepArch(N_FEATURES, n_trees, seq_len=SEQ_LEN, seq_fields=N_SEQ))
    rng = np.random.default_rng(0)
    n = 2500  # two full chunks of 1024 and one of 452, padded to 1024
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    seq = rng.uniform(0, 3, size=(n, SEQ_LEN * N_SEQ)).astype(np.float32)
    net.set_scaler(x, seq.reshape(n, SEQ_LEN, N_SEQ))
    margin = rng.normal(size=n).astype(np.float32)
    leaves = rng.integers(0, LEAF_SLOTS, size=(n, n_trees)).astype(np.int32)
    cpu = DeviceRunner(HybridNet(net.arch), torch.device("cpu"), PADS, 1.0)
    cpu.net.load_state_dict(net.state_dict())
    gpu = DeviceRunner(net, torch.device("cuda"), PADS, 0.7, fp16=fp16, compile=compile)
    gpu.warm_up()
    expected = cpu.scores(x, margin, leaves, seq)
    for rows in (n, 1, 63, 64, 65, 300):  # every padded size, a partial one each, and the same buffers reused
        np.testing.assert_allclose(gpu.scores(x[:rows], margin[:rows], leaves[:rows], seq[:rows]), expected[:rows], atol=atol)
    assert gpu.fp16 is fp16
