"""Running the deep model on a device: CUDA with fp16 autocast when there is a GPU,
CPU fp32 otherwise — the same code. Inputs are checked for shape and finiteness
before they reach the device, batches are padded to a few fixed sizes (so kernels
and allocations are reused) and each size is warmed up before consuming.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import structlog
import torch

from models.deep import HybridNet
from stream.errors import ValidationError

log = structlog.get_logger("fraudstream.runtime")


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


class DeviceRunner:
    """A HybridNet on a device, scoring micro-batches (padded to fixed sizes on CUDA)."""

    def __init__(self, net: HybridNet, device: torch.device, pad_sizes: Sequence[int], memory_fraction: float) -> None:
        self.device = device
        self.pad_sizes = tuple(pad_sizes)
        self.fp16 = device.type == "cuda"
        if self.fp16:
            torch.cuda.set_per_process_memory_fraction(memory_fraction, device)
        self.net = net.to(device).eval()
        self.n_features = net.arch.n_features
        self.n_trees = net.arch.n_trees

    def warm_up(self) -> None:
        """Run every padded size once, in the serving precision."""
        for n in self.pad_sizes:
            x = np.zeros((n, self.n_features), dtype=np.float32)
            self.scores(x, np.zeros(n, dtype=np.float32), np.zeros((n, self.n_trees), dtype=np.int32))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        log.info("deep_warm", device=str(self.device), fp16=self.fp16, sizes=list(self.pad_sizes))

    def check(self, x: np.ndarray, margin: np.ndarray, leaves: np.ndarray) -> None:
        """Shape and value checks before the device; ValidationError says which."""
        n = len(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValidationError(f"features have shape {x.shape}, model expects (n, {self.n_features})")
        if margin.shape != (n,):
            raise ValidationError(f"margin has shape {margin.shape}, expected ({n},)")
        if leaves.shape != (n, self.n_trees):
            raise ValidationError(f"leaf indices have shape {leaves.shape}, model expects ({n}, {self.n_trees})")
        if not np.isfinite(margin).all():
            raise ValidationError("margin is not finite")
        if np.isinf(x).any():
            raise ValidationError("features contain inf")  # NaN means missing and is allowed
        if leaves.size and (leaves.min() < 0 or leaves.max() >= 128):
            raise ValidationError("leaf index out of range")

    def _pad_to(self, n: int) -> int:
        if self.device.type != "cuda":
            return n  # CPU kernels take any batch size alike; padding would only add work
        for size in self.pad_sizes:
            if n <= size:
                return size
        return n

    @torch.no_grad()
    def scores(self, x: np.ndarray, margin: np.ndarray, leaves: np.ndarray) -> np.ndarray:
        """Fraud probability per row, (n,) float32."""
        self.check(x, margin, leaves)
        n = len(x)
        out = np.empty(n, dtype=np.float32)
        step = self.pad_sizes[-1]
        for start in range(0, n, step):
            stop = min(start + step, n)
            m = stop - start
            size = self._pad_to(m)
            xb = np.zeros((size, self.n_features), dtype=np.float32)
            xb[:m] = x[start:stop]
            mb = np.zeros(size, dtype=np.float32)
            mb[:m] = margin[start:stop]
            lb = np.zeros((size, self.n_trees), dtype=np.int64)
            lb[:m] = leaves[start:stop]
            xt = torch.from_numpy(xb).to(self.device, non_blocking=True)
            mt = torch.from_numpy(mb).to(self.device, non_blocking=True)
            lt = torch.from_numpy(lb).to(self.device, non_blocking=True)
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.fp16):
                logits = self.net(xt, mt, lt)
            out[start:stop] = torch.sigmoid(logits.float())[:m].cpu().numpy()
        return out

    def gradient_x_input(self, x: np.ndarray, margin: np.ndarray, leaves: np.ndarray) -> np.ndarray:
        """Reason codes for the torch model: d logit / d z × z on the standardized input, (n, F)."""
        if len(x) == 0:
            return np.zeros((0, self.n_features), dtype=np.float32)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        z = self.net.embed_input(xt).detach().requires_grad_(True)
        mt = torch.from_numpy(np.ascontiguousarray(margin, dtype=np.float32)).to(self.device)
        lt = torch.from_numpy(leaves.astype(np.int64)).to(self.device)
        parts = [z]
        if self.net.arch.use_xgb:
            parts += [mt.unsqueeze(1), self.net.leaf_emb(lt + self.net.leaf_offsets)]
        logits = self.net.mlp(torch.cat(parts, dim=1)).squeeze(1)
        logits.sum().backward()
        grad = z.grad
        if grad is None:
            return np.zeros((len(x), self.n_features), dtype=np.float32)
        return (grad * z).detach().float().cpu().numpy()
