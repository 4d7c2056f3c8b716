"""Running the deep model on a device: CUDA when there is a GPU, CPU otherwise — the same
code. fp32 by default on both (the same scores as a CPU backtest; fp16 autocast is a setting,
and bought nothing for this small model on an H200 — see the GPU table in docs/performance.md). Inputs are
checked for shape and finiteness before they reach the device; on CUDA, batches are staged in
page-locked memory, padded to a few fixed sizes (so kernels, allocations and compiled graphs
are reused) and each size is warmed up before consuming.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import structlog
import torch

from models.deep import HybridNet
from models.xgb import LEAF_SLOTS
from stream.errors import ValidationError

log = structlog.get_logger("fraudstream.runtime")


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


class DeviceRunner:
    """A HybridNet on a device, scoring micro-batches (padded to fixed sizes on CUDA)."""

    def __init__(
        self,
        net: HybridNet,
        device: torch.device,
        pad_sizes: Sequence[int],
        memory_fraction: float,
        fp16: bool = False,
        compile: bool = False,
    ) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda and device.index is None:  # CUDA's memory cap needs the device's index
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.pad_sizes = tuple(pad_sizes)
        self.fp16 = fp16 and self.cuda  # autocast to fp16 on CUDA; CPU always runs fp32
        if self.cuda:
            torch.cuda.set_per_process_memory_fraction(memory_fraction, device)
        self.net = net.to(device).eval()
        # torch.compile specialises on each padded size once (warm_up); the eager module stays for gradients.
        self._forward: Callable[..., torch.Tensor] = torch.compile(self.net, dynamic=False) if compile else self.net
        self.n_features = net.arch.n_features
        self.n_trees = net.arch.n_trees
        self.seq_shape = (net.arch.seq_len, net.arch.seq_fields)  # (0, 0): the model reads no sequence
        # On CUDA, rows are staged in page-locked host buffers (one set per padded size), so the copies to the
        # device are true DMA; a buffer is reused only after the previous batch's scores came back.
        self._staging: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        if self.cuda:
            for n in self.pad_sizes:
                self._staging[n] = (
                    torch.zeros((n, self.n_features), dtype=torch.float32).pin_memory(),
                    torch.zeros(n, dtype=torch.float32).pin_memory(),
                    torch.zeros((n, self.n_trees), dtype=torch.int32).pin_memory(),
                    torch.zeros((n, *self.seq_shape), dtype=torch.float32).pin_memory(),
                )

    def warm_up(self) -> None:
        """Run every padded size once, in the serving precision."""
        for n in self.pad_sizes:
            x = np.zeros((n, self.n_features), dtype=np.float32)
            seq = np.zeros((n, *self.seq_shape), dtype=np.float32)
            self.scores(x, np.zeros(n, dtype=np.float32), np.zeros((n, self.n_trees), dtype=np.int32), seq)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        log.info("deep_warm", device=str(self.device), fp16=self.fp16, sizes=list(self.pad_sizes))

    def check(self, x: np.ndarray, margin: np.ndarray, leaves: np.ndarray, seq: np.ndarray | None) -> np.ndarray:
        """Shape and value checks before the device; ValidationError says which. The card sequences,
        flat (n, L * S) as carried or (n, L, S), come back as (n, L, S) — (n, 0, 0) for a model without."""
        n = len(x)
        if self.seq_shape[0] == 0:
            seq = np.zeros((n, 0, 0), dtype=np.float32)
        elif seq is None or seq.size != n * self.seq_shape[0] * self.seq_shape[1] or len(seq) != n:
            got = "none" if seq is None else f"shape {seq.shape}"
            raise ValidationError(f"card sequences: {got}, model expects ({n}, {self.seq_shape[0]} x {self.seq_shape[1]})")
        elif not np.isfinite(seq).all():
            raise ValidationError("card sequences are not finite")
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
        if leaves.size and (leaves.min() < 0 or leaves.max() >= LEAF_SLOTS):
            raise ValidationError("leaf index out of range")
        return np.ascontiguousarray(seq, dtype=np.float32).reshape(n, *self.seq_shape)

    @torch.no_grad()
    def scores(self, x: np.ndarray, margin: np.ndarray, leaves: np.ndarray, seq: np.ndarray | None = None) -> np.ndarray:
        """Fraud probability per row, (n,) float32."""
        seq = self.check(x, margin, leaves, seq)
        n = len(x)
        out = np.empty(n, dtype=np.float32)
        step = self.pad_sizes[-1]
        for start in range(0, n, step):
            stop = min(start + step, n)
            logits = self.logits(*self._to_device(x[start:stop], margin[start:stop], leaves[start:stop], seq[start:stop]))
            out[start:stop] = torch.sigmoid(logits.float())[: stop - start].cpu().numpy()
        return out

    @torch.no_grad()
    def logits(self, x: torch.Tensor, margin: torch.Tensor, leaves: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
        """The model on tensors already on the device, in the serving precision (and compiled, if set)."""
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.fp16):
            result: torch.Tensor = self._forward(x, margin, leaves, seq if self.seq_shape[0] else None)
        return result

    def _to_device(self, x: np.ndarray, margin: np.ndarray, leaves: np.ndarray, seq: np.ndarray) -> tuple[torch.Tensor, ...]:
        """One chunk as device tensors; on CUDA padded to a fixed size (padding rows: zeros, scores dropped)."""
        m = len(x)
        if not self.cuda:
            return (
                torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(margin, dtype=np.float32)),
                torch.from_numpy(leaves.astype(np.int64)),
                torch.from_numpy(seq),
            )
        xs, ms, ls, ss = self._staging[next(s for s in self.pad_sizes if m <= s)]  # chunks are cut to the largest
        for host, rows in ((xs, x), (ms, margin), (ls, leaves), (ss, seq)):
            view = host.numpy()
            view[:m] = rows
            view[m:] = 0
        return (
            xs.to(self.device, non_blocking=True),
            ms.to(self.device, non_blocking=True),
            ls.to(self.device, non_blocking=True).long(),
            ss.to(self.device, non_blocking=True),
        )

    def gradient_x_input(
        self, x: np.ndarray, margin: np.ndarray, leaves: np.ndarray, seq: np.ndarray | None = None
    ) -> np.ndarray:
        """Reason codes for the torch model: d logit / d z × z on the standardized input, (n, F)."""
        if len(x) == 0:
            return np.zeros((0, self.n_features), dtype=np.float32)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        z = self.net.embed_input(xt).detach().requires_grad_(True)
        mt = torch.from_numpy(np.ascontiguousarray(margin, dtype=np.float32)).to(self.device)
        lt = torch.from_numpy(leaves.astype(np.int64)).to(self.device)
        steps = self.check(x, margin, leaves, seq)
        st = torch.from_numpy(steps).to(self.device) if self.seq_shape[0] else None
        logits = self.net.head(z, mt, lt, st)
        logits.sum().backward()  # type: ignore[no-untyped-call]
        grad = z.grad
        if grad is None:
            return np.zeros((len(x), self.n_features), dtype=np.float32)
        return (grad * z).detach().float().cpu().numpy()
