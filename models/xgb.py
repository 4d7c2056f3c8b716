"""Stage 1: the XGBoost model (`hist`), its outputs and explanations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xgboost as xgb

# Node ids of a tree of depth <= MAX_DEPTH are below 2**(MAX_DEPTH + 1) - 1; the deep
# model embeds (tree, node id) pairs, so the depth bounds its embedding table.
MAX_DEPTH = 6
LEAF_SLOTS = 2 ** (MAX_DEPTH + 1)


@dataclass(frozen=True, slots=True)
class XgbParams:
    max_depth: int = MAX_DEPTH
    eta: float = 0.1
    num_boost_round: int = 400
    early_stopping_rounds: int = 30
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 1.0
    nthread: int = 2


def train_xgb(
    x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int, params: XgbParams | None = None
) -> xgb.Booster:
    """Train with early stopping on validation average precision; imbalance via scale_pos_weight."""
    p = params or XgbParams()
    if p.max_depth > MAX_DEPTH:
        raise ValueError(f"max_depth {p.max_depth} exceeds {MAX_DEPTH}, the leaf embedding bound")
    pos = max(int(y.sum()), 1)
    booster = xgb.train(
        {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "eval_metric": "aucpr",
            "max_depth": p.max_depth,
            "eta": p.eta,
            "subsample": p.subsample,
            "colsample_bytree": p.colsample_bytree,
            "min_child_weight": p.min_child_weight,
            # sqrt of the imbalance: full reweighting over-calibrates and hurts precision.
            "scale_pos_weight": float(np.sqrt((len(y) - pos) / pos)),
            "nthread": p.nthread,
            "seed": seed,
        },
        xgb.DMatrix(x, label=y, nthread=p.nthread),
        num_boost_round=p.num_boost_round,
        evals=[(xgb.DMatrix(x_val, label=y_val, nthread=p.nthread), "val")],
        early_stopping_rounds=p.early_stopping_rounds,
        verbose_eval=False,
    )
    # Keep only the trees early stopping chose, so every consumer sees the same model.
    best = booster.best_iteration + 1
    return booster[:best]


def margins(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    """Raw log-odds, (n,) float32."""
    out = booster.inplace_predict(x, predict_type="margin")
    return np.asarray(out, dtype=np.float32).reshape(-1)


def _dmatrix(x: np.ndarray) -> xgb.DMatrix:
    # A micro-batch converts faster on one thread than by waking an OpenMP team that,
    # on a shared host, spins against the broker and the other stage.
    return xgb.DMatrix(x, nthread=1 if len(x) <= 8192 else -1)


def sigmoid(m: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-m.astype(np.float64)))).astype(np.float32)


def leaves(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    """Leaf node id in each tree, (n, T) int32."""
    if len(x) == 0:
        return np.zeros((0, booster.num_boosted_rounds()), dtype=np.int32)
    out = booster.predict(_dmatrix(x), pred_leaf=True)
    return np.asarray(out, dtype=np.int32).reshape(len(x), -1)


def contributions(booster: xgb.Booster, x: np.ndarray, approx: bool = True) -> np.ndarray:
    """Per-feature contributions to the margin, (n, F + 1) with the bias last.

    approx=True is Saabas (fast, for live reason codes); approx=False is TreeSHAP.
    """
    out = booster.predict(_dmatrix(x), pred_contribs=True, approx_contribs=approx)
    return np.asarray(out, dtype=np.float32)


def importance_gain(booster: xgb.Booster, names: tuple[str, ...]) -> dict[str, float]:
    """Global feature importance by total gain, largest first."""
    raw = booster.get_score(importance_type="total_gain")
    named = {
        names[int(k[1:])] if k.startswith("f") and k[1:].isdigit() else k: float(v if not isinstance(v, list) else sum(v))
        for k, v in raw.items()
    }
    return dict(sorted(named.items(), key=lambda kv: -kv[1]))
