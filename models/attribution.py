"""Exact explanations for an audit: TreeSHAP for XGBoost, integrated gradients for the MLP.

Both are additive: XGBoost's contributions plus its bias equal the margin; the
MLP's attributions plus the logit at the baseline (every feature at its training
mean, the XGBoost inputs at their actual values) equal the logit, up to the
Riemann error of the path integral.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xgboost as xgb

from models.deep import HybridNet


@dataclass(frozen=True, slots=True)
class Attribution:
    contributions: np.ndarray  # (F,) float64
    base: float  # bias (XGBoost) or baseline logit (MLP)
    output: float  # margin (XGBoost) or logit (MLP)

    @property
    def additivity_error(self) -> float:
        return abs(float(self.contributions.sum()) + self.base - self.output)


def tree_shap(booster: xgb.Booster, x: np.ndarray) -> Attribution:
    """Exact TreeSHAP of one row x (F,)."""
    contrib = np.asarray(booster.predict(xgb.DMatrix(x[None, :]), pred_contribs=True, approx_contribs=False))[0]
    margin = float(np.asarray(booster.inplace_predict(x[None, :], predict_type="margin")).reshape(-1)[0])
    return Attribution(contrib[:-1].astype(np.float64), float(contrib[-1]), margin)


def integrated_gradients(
    net: HybridNet, x: np.ndarray, margin: float, leaves: np.ndarray, seq: np.ndarray | None = None, steps: int = 256
) -> Attribution:
    """Integrated gradients of the logit w.r.t. the standardized features, from the training mean
    (the margin, leaves and card sequence held fixed), in float64."""
    net.eval()
    net.double()
    try:
        with torch.no_grad():
            z = net.embed_input(torch.as_tensor(x[None, :], dtype=torch.float64))
        m = torch.full((steps,), margin, dtype=torch.float64)
        lt = torch.as_tensor(leaves[None, :].astype(np.int64)).expand(steps, -1)
        st = None
        if net.arch.seq_len and seq is not None:
            st = torch.as_tensor(seq.reshape(1, net.arch.seq_len, net.arch.seq_fields), dtype=torch.float64).expand(steps, -1, -1)
        alphas = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps  # midpoint rule
        path = (alphas[:, None] * z).requires_grad_(True)
        net.head(path, m, lt, st).sum().backward()  # type: ignore[no-untyped-call]
        grad = path.grad
        if grad is None:
            raise RuntimeError("no gradient")
        attributions = (grad.mean(dim=0) * z[0]).detach().numpy()
        with torch.no_grad():
            one = (m[:1], lt[:1], st[:1] if st is not None else None)
            base = float(net.head(torch.zeros_like(z), *one)[0])
            logit = float(net.head(z, *one)[0])
    finally:
        net.float()
    return Attribution(attributions, base, logit)
