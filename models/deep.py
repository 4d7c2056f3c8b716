"""Stage 2: a PyTorch MLP over standardized features, the XGBoost margin and
learned embeddings of the XGBoost leaf indices (feature augmentation).

The same class, with `use_xgb=False`, is the "MLP alone" baseline of the
evaluation table. Standardization statistics live in the module's buffers, so a
state dict loaded with `weights_only=True` is the whole model.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

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

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> DeepArch:
        return cls(
            n_features=int(d["n_features"]),  # type: ignore[call-overload]
            n_trees=int(d["n_trees"]),  # type: ignore[call-overload]
            use_xgb=bool(d["use_xgb"]),
            emb_dim=int(d["emb_dim"]),  # type: ignore[call-overload]
            hidden=tuple(int(h) for h in d["hidden"]),  # type: ignore[attr-defined]
            dropout=float(d["dropout"]),  # type: ignore[arg-type]
        )


class HybridNet(nn.Module):
    """logit = MLP([standardized features ‖ xgb margin ‖ mean leaf embedding])."""

    mean: torch.Tensor
    std: torch.Tensor
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
        layers: list[nn.Module] = []
        for h in arch.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(arch.dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def set_scaler(self, x: np.ndarray) -> None:
        """Fit standardization on training features (NaN-aware)."""
        # A column that is missing everywhere (no devices, no geo in a user's history) is expected.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nan_to_num(np.nanmean(x, axis=0), nan=0.0)
            std = np.nan_to_num(np.nanstd(x, axis=0), nan=1.0)
        std[std < 1e-6] = 1.0
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def embed_input(self, x: torch.Tensor) -> torch.Tensor:
        """Standardize and clip; missing values become the mean (0)."""
        z = (x - self.mean) / self.std
        return torch.nan_to_num(z, nan=0.0).clamp(-10.0, 10.0)

    def forward(self, x: torch.Tensor, margin: torch.Tensor, leaves: torch.Tensor) -> torch.Tensor:
        """x (n, F) float, margin (n,) float, leaves (n, T) long -> logits (n,)."""
        parts = [self.embed_input(x)]
        if self.arch.use_xgb:
            parts.append(margin.unsqueeze(1).to(parts[0].dtype))
            parts.append(self.leaf_emb(leaves + self.leaf_offsets).to(parts[0].dtype))
        logits: torch.Tensor = self.mlp(torch.cat(parts, dim=1)).squeeze(1)
        return logits


@dataclass(frozen=True, slots=True)
class DeepTrainParams:
    epochs: int = 20
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-5
    patience: int = 4


def train_deep(
    arch: DeepArch,
    train: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    seed: int,
    params: DeepTrainParams | None = None,
    progress: bool = False,
) -> HybridNet:
    """Train on (x, margin, leaves, y); keep the epoch with the best validation AP."""
    p = params or DeepTrainParams()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = HybridNet(arch)
    x, m, lv, y = train
    net.set_scaler(x)
    xt, mt, lt = torch.as_tensor(x), torch.as_tensor(m), torch.as_tensor(lv.astype(np.int64))
    yt = torch.as_tensor(y.astype(np.float32))
    pos = max(float(y.sum()), 1.0)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(np.sqrt((len(y) - pos) / pos), dtype=torch.float32))
    opt = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    best_ap, best_state, stale = -1.0, None, 0
    for epoch in range(p.epochs):
        net.train()
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), p.batch_size):
            idx = perm[i : i + p.batch_size]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx], mt[idx], lt[idx]), yt[idx])
            loss.backward()
            opt.step()
        ap = average_precision(val[3], predict_proba(net, val[0], val[1], val[2]))
        if progress:
            print(f"  epoch {epoch + 1:2d}  val AP {ap:.4f}")
        if ap > best_ap:
            best_ap, best_state, stale = ap, {k: v.clone() for k, v in net.state_dict().items()}, 0
        else:
            stale += 1
            if stale >= p.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return net


@torch.no_grad()
def predict_proba(net: HybridNet, x: np.ndarray, margin: np.ndarray, leaves: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Fraud probability, (n,) float32, on CPU in fp32."""
    net.eval()
    out = []
    for i in range(0, len(x), batch):
        logits = net(
            torch.as_tensor(x[i : i + batch]),
            torch.as_tensor(margin[i : i + batch]),
            torch.as_tensor(leaves[i : i + batch].astype(np.int64)),
        )
        out.append(torch.sigmoid(logits).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, dtype=np.float32)
