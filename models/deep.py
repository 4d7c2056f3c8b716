"""Stage 2: a PyTorch network over standardized features, the XGBoost margin, learned
embeddings of the XGBoost leaf indices (feature augmentation) and an encoding of the card's
recent sequence (`models.sequence`); with `residual`, its output is a correction added to
the XGBoost margin, so it starts as XGBoost and learns only what the trees miss.

The same class, with `use_xgb=False`, is the "MLP alone" baseline of the
evaluation table. Standardization statistics live in the module's buffers, so a
state dict loaded with `weights_only=True` is the whole model.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from models.evaluation import average_precision
from models.xgb import LEAF_SLOTS


@dataclass(frozen=True, slots=True)
class DeepArch:
    """Everything needed to rebuild the module before loading its weights."""

    n_features: int
    n_trees: int
    use_xgb: bool = True
    emb_dim: int = 8
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    seq_len: int = 0  # steps of the card sequence (models.sequence); 0: no sequence encoder
    seq_fields: int = 0
    encoder: str = "conv"  # "conv" or "gru"
    seq_hidden: int = 32
    residual: bool = False  # logit = XGBoost margin + the network's correction

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> DeepArch:
        """The manifest's architecture; keys added since an artifact was written take their defaults."""
        base = cls(0, 0)
        kw: dict[str, Any] = {k: type(getattr(base, k))(d.get(k, getattr(base, k))) for k in cls.__dataclass_fields__}
        kw["hidden"] = tuple(int(h) for h in d.get("hidden", base.hidden))  # type: ignore[attr-defined]
        return cls(**kw)


class SequenceEncoder(nn.Module):
    """(n, L, S) standardized steps -> (n, H): a GRU's last state, or a masked max over 1-D convolutions."""

    def __init__(self, fields: int, hidden: int, kind: str) -> None:
        super().__init__()
        if kind not in ("gru", "conv"):
            raise ValueError(f"encoder {kind!r}: expected 'gru' or 'conv'")
        self.kind = kind
        if kind == "gru":
            self.gru = nn.GRU(fields, hidden, batch_first=True)
        else:
            self.conv = nn.Sequential(
                nn.Conv1d(fields, hidden, 3, padding=1), nn.ReLU(), nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU()
            )

    def forward(self, seq: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        if self.kind == "gru":
            _, last = self.gru(seq)  # steps are right-aligned: the last state has seen the current event
            state: torch.Tensor = last[-1]
            return state
        h = self.conv(seq.transpose(1, 2))
        return torch.where(present.unsqueeze(1) > 0, h, torch.zeros_like(h)).amax(dim=2)


class HybridNet(nn.Module):
    """logit = [margin +] MLP([standardized features ‖ xgb margin ‖ mean leaf embedding ‖ sequence code])."""

    mean: torch.Tensor
    std: torch.Tensor
    seq_mean: torch.Tensor
    seq_std: torch.Tensor
    leaf_offsets: torch.Tensor

    def __init__(self, arch: DeepArch) -> None:
        super().__init__()
        self.arch = arch
        self.register_buffer("mean", torch.zeros(arch.n_features))
        self.register_buffer("std", torch.ones(arch.n_features))
        self.register_buffer("leaf_offsets", torch.arange(arch.n_trees, dtype=torch.long) * LEAF_SLOTS)
        width = arch.n_features
        if arch.use_xgb:
            self.leaf_emb = nn.EmbeddingBag(max(arch.n_trees, 1) * LEAF_SLOTS, arch.emb_dim, mode="mean")
            width += 1 + arch.emb_dim
        if arch.seq_len:
            self.register_buffer("seq_mean", torch.zeros(arch.seq_fields))
            self.register_buffer("seq_std", torch.ones(arch.seq_fields))
            self.encoder = SequenceEncoder(arch.seq_fields, arch.seq_hidden, arch.encoder)
            width += arch.seq_hidden
        layers: list[nn.Module] = []
        for h in arch.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(arch.dropout)]
            width = h
        out = nn.Linear(width, 1)
        if arch.residual:  # starts as XGBoost exactly and learns only what it adds
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
        layers.append(out)
        self.mlp = nn.Sequential(*layers)

    def set_scaler(self, x: np.ndarray, seq: np.ndarray | None = None) -> None:
        """Fit standardization on training features (NaN-aware) and on the real steps of the sequences."""
        # A column that is missing everywhere (no devices, no geo in a user's history) is expected.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nan_to_num(np.nanmean(x, axis=0), nan=0.0)
            std = np.nan_to_num(np.nanstd(x, axis=0), nan=1.0)
        std[std < 1e-6] = 1.0
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        if self.arch.seq_len and seq is not None:
            steps = seq.reshape(-1, seq.shape[-1])
            steps = steps[steps[:, 0] > 0]
            s_mean = steps.mean(axis=0) if len(steps) else np.zeros(seq.shape[-1])
            s_std = steps.std(axis=0) if len(steps) else np.ones(seq.shape[-1])
            s_std[s_std < 1e-6] = 1.0
            self.seq_mean.copy_(torch.as_tensor(s_mean, dtype=torch.float32))
            self.seq_std.copy_(torch.as_tensor(s_std, dtype=torch.float32))

    def embed_input(self, x: torch.Tensor) -> torch.Tensor:
        """Standardize and clip; missing values become the mean (0)."""
        z = (x - self.mean) / self.std
        return torch.nan_to_num(z, nan=0.0).clamp(-10.0, 10.0)

    def head(self, z: torch.Tensor, margin: torch.Tensor, leaves: torch.Tensor, seq: torch.Tensor | None) -> torch.Tensor:
        """Logits from standardized features z (where reason codes take their gradient)."""
        parts = [z]
        if self.arch.use_xgb:
            parts.append(margin.unsqueeze(1).to(z.dtype))
            parts.append(self.leaf_emb(leaves + self.leaf_offsets).to(z.dtype))
        if self.arch.seq_len:
            if seq is None:
                raise ValueError("this model reads the card sequence: pass seq (n, seq_len, seq_fields)")
            present = seq[:, :, 0]
            steps = torch.where(present.unsqueeze(2) > 0, (seq - self.seq_mean) / self.seq_std, torch.zeros_like(seq))
            parts.append(self.encoder(steps.clamp(-10.0, 10.0), present).to(z.dtype))
        logits: torch.Tensor = self.mlp(torch.cat(parts, dim=1)).squeeze(1)
        if self.arch.residual:
            logits = logits + margin.to(logits.dtype)
        return logits

    def forward(
        self, x: torch.Tensor, margin: torch.Tensor, leaves: torch.Tensor, seq: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (n, F) float, margin (n,) float, leaves (n, T) long, seq (n, L, S) float -> logits (n,)."""
        return self.head(self.embed_input(x), margin, leaves, seq)


@dataclass(frozen=True, slots=True)
class DeepTrainParams:
    epochs: int = 20
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-5
    patience: int = 4


Rows = tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]  # x, seq, margin, leaves, y


def train_deep(
    arch: DeepArch,
    train: Rows,
    val: Rows,
    seed: int,
    params: DeepTrainParams | None = None,
    progress: Callable[[str], None] | None = None,
    device: str = "auto",
) -> HybridNet:
    """Train on (x, seq, margin, leaves, y) — on CUDA when there is a GPU and device is "auto" —
    and keep the epoch with the best validation AP (early stopping after `patience` worse ones)."""
    p = params or DeepTrainParams()
    on = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = HybridNet(arch)
    x, seq, m, lv, y = train
    net.set_scaler(x, seq)
    net.to(on)
    tensors = [torch.as_tensor(x), torch.as_tensor(m), torch.as_tensor(lv.astype(np.int64))]
    tensors.append(torch.as_tensor(seq) if arch.seq_len and seq is not None else torch.zeros(len(y), 0))
    xt, mt, lt, st = (t.to(on) for t in tensors)
    yt = torch.as_tensor(y.astype(np.float32)).to(on)
    pos = max(float(y.sum()), 1.0)
    weight = torch.tensor(np.sqrt((len(y) - pos) / pos), dtype=torch.float32, device=on)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
    opt = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    best_ap, best_state, stale = -1.0, None, 0
    for epoch in range(p.epochs):
        started = time.perf_counter()
        net.train()
        perm = torch.randperm(len(y), generator=gen).to(on)
        for i in range(0, len(y), p.batch_size):
            idx = perm[i : i + p.batch_size]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx], mt[idx], lt[idx], st[idx] if arch.seq_len else None), yt[idx])
            loss.backward()
            opt.step()
        ap = average_precision(val[4], predict_proba(net, val[0], val[2], val[3], val[1]))
        if progress is not None:
            progress(f"epoch {epoch + 1:2d}  val AP {ap:.4f}  {time.perf_counter() - started:.1f} s on {on.type}")
        if ap > best_ap:
            best_ap, best_state, stale = ap, {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, 0
        else:
            stale += 1
            if stale >= p.patience:
                break
    net.cpu()
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return net


@torch.no_grad()
def predict_proba(
    net: HybridNet, x: np.ndarray, margin: np.ndarray, leaves: np.ndarray, seq: np.ndarray | None = None, batch: int = 8192
) -> np.ndarray:
    """Fraud probability, (n,) float32, in fp32 on the device the net is on."""
    net.eval()
    on = net.mean.device
    out = []
    for i in range(0, len(x), batch):
        logits = net(
            torch.as_tensor(x[i : i + batch]).to(on),
            torch.as_tensor(margin[i : i + batch]).to(on),
            torch.as_tensor(leaves[i : i + batch].astype(np.int64)).to(on),
            torch.as_tensor(seq[i : i + batch]).to(on) if seq is not None and net.arch.seq_len else None,
        )
        out.append(torch.sigmoid(logits).cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, dtype=np.float32)
