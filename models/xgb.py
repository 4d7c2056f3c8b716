"""Stage 1: the XGBoost model (`hist`), its outputs and explanations."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from models.kernels import walk

# Node ids of a tree of depth <= MAX_DEPTH are below 2**(MAX_DEPTH + 1) - 1; the deep
# model embeds (tree, node id) pairs, so the depth bounds its embedding table.
MAX_DEPTH = 6
LEAF_SLOTS = 2 ** (MAX_DEPTH + 1)

# The compiled walk (`Forest`) gives margins and every leaf at once. On one thread it beats
# XGBoost's margins plus the band's leaves at every batch size (rows on the thresholds, 500 of them:
# 2.5 against 3.6 ms; 12 rows: 0.05 against 0.57 ms); XGBoost on more threads wins past this many rows.
FOREST_MAX_ROWS = 64


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


class Forest:
    """The booster's trees as flat arrays, walked by a compiled kernel.

    Each XGBoost prediction call costs ~0.1 ms before it looks at a row, and a batch needs
    two (margins, then leaves for the deep stage); one walk down every tree gives both
    (`models.kernels.walk`; `walk_numpy` is the reference). It is exact:
    splits are XGBoost's own (`x < threshold` in float32, missing values take the
    default branch) and margins are summed tree by tree in float32 from the base
    margin, as XGBoost sums them, so scores are bit-identical whichever path ran.
    `build` checks that on probe rows and returns None for anything it does not cover
    (categorical splits, other objectives, several targets) — callers then use XGBoost.
    """

    def __init__(self, nodes: dict[str, np.ndarray], roots: np.ndarray, depth: int, base: np.float32, n_features: int) -> None:
        self.n_features = n_features
        # Every tree's nodes side by side; children as positions in these arrays.
        self.feature, self.threshold, self.value = nodes["feature"], nodes["threshold"], nodes["value"]
        self.left, self.right, self.default_left = nodes["left"], nodes["right"], nodes["default_left"]
        self.roots, self.depth, self.base = roots[:, None], depth, base

    @classmethod
    def build(cls, booster: xgb.Booster, n_features: int) -> Forest | None:
        model = json.loads(booster.save_raw("json"))
        learner = model["learner"]
        params = learner["learner_model_param"]
        gb = learner["gradient_booster"]
        binary = learner["objective"]["name"] == "binary:logistic" and params.get("num_target", "1") == "1"
        if gb.get("name") != "gbtree" or not binary:
            return None
        trees = gb["model"]["trees"]
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("feature", "threshold", "left", "right", "default_left", "value")}
        roots, depth, offset = [], 0, 0
        for t in trees:
            if any(t["split_type"]) or int(t["tree_param"].get("size_leaf_vector", "1")) > 1:
                return None
            lc, rc = np.asarray(t["left_children"], np.intp), np.asarray(t["right_children"], np.intp)
            ids = np.arange(len(lc))
            leaf = lc == -1
            cond = np.asarray(t["split_conditions"], np.float32)
            roots.append(offset)
            # A leaf points to itself, so every row can take the same number of steps.
            parts["left"].append(np.where(leaf, ids, lc) + offset)
            parts["right"].append(np.where(leaf, ids, rc) + offset)
            parts["feature"].append(np.where(leaf, 0, np.asarray(t["split_indices"], np.intp)))
            parts["threshold"].append(cond)
            parts["default_left"].append(np.asarray(t["default_left"], bool))
            parts["value"].append(np.where(leaf, cond, np.float32(0)))
            depth = max(depth, _depth(lc, rc))
            offset += len(lc)
        # XGBoost's own float32 arithmetic for the base margin: -log(1/p - 1).
        p = np.float32(str(params["base_score"]).strip("[]"))
        base = -np.log(np.float32(1) / p - np.float32(1))
        nodes = {k: np.concatenate(v) for k, v in parts.items()}
        forest = cls(nodes, np.asarray(roots, np.intp), depth, np.float32(base), n_features)
        probe = forest.probe_rows()
        m, leaves_ = forest.predict(probe)
        exact = np.array_equal(m, margins(booster, probe)) and np.array_equal(leaves_, leaves(booster, probe))
        exact = exact and all(np.array_equal(forest.predict(probe[i : i + 1])[0], m[i : i + 1]) for i in range(8))
        return forest if exact else None

    def probe_rows(self, n: int = 256, seed: int = 0) -> np.ndarray:
        """Rows on, just below and just above the split thresholds, some values missing."""
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, self.n_features)).astype(np.float32)
        for j in range(self.n_features):
            cuts = self.threshold[(self.feature == j) & (self.left != np.arange(len(self.left)))]
            if len(cuts):
                cut = rng.choice(cuts, n)
                side = rng.integers(-1, 2, n)  # below, on or above the threshold
                x[:, j] = np.where(side == 0, cut, np.nextafter(cut, np.where(side < 0, -np.inf, np.inf).astype(np.float32)))
        x[rng.random(x.shape) < 0.05] = np.nan
        return x

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(margins (n,) float32, leaf node id per tree (n, T) int32) of float32 rows: one
        compiled walk per row and tree (`models.kernels.walk`)."""
        x = self._rows(x)
        margins, leaves = np.empty(len(x), np.float32), np.empty((len(x), len(self.roots)), np.int32)
        walk(x, self.roots[:, 0], self.feature, self.threshold, self.left, self.right, self.default_left, self.value,
             self.base, self.depth, margins, leaves)  # fmt: skip
        return margins, leaves

    def walk_numpy(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`predict` in numpy, every tree a level at a time for all rows (the reference)."""
        x = self._rows(x)
        n, f = x.shape
        flat = x.reshape(-1)
        row = (np.arange(n, dtype=np.intp) * f)[None, :]
        node = np.broadcast_to(self.roots, (len(self.roots), n))  # (trees, rows)
        for _ in range(self.depth):
            v = flat[row + self.feature[node]]
            go_left = v < self.threshold[node]
            missing = np.isnan(v)
            if missing.any():
                go_left = np.where(missing, self.default_left[node], go_left)
            node = np.where(go_left, self.left[node], self.right[node])
        # Tree by tree from the base margin, XGBoost's order, so the float32 rounding is the
        # same. A running sum (accumulate) is sequential by definition; a plain sum may
        # add pairwise and differ in the last bit.
        terms = np.empty((len(self.roots) + 1, n), dtype=np.float32)
        terms[0] = self.base
        terms[1:] = self.value[node]
        m = np.add.accumulate(terms, axis=0, dtype=np.float32)[-1]
        return m, (node - self.roots).T.astype(np.int32)

    def _rows(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"rows of shape {x.shape}, the trees expect (n, {self.n_features})")
        return x


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    deepest, todo = 0, [(0, 0)]
    while todo:
        node, d = todo.pop()
        deepest = max(deepest, d)
        if left[node] != -1:
            todo += [(int(left[node]), d + 1), (int(right[node]), d + 1)]
    return deepest
