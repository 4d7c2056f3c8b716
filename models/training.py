"""Training: time-ordered split, XGBoost, the hybrid MLP on out-of-fold XGBoost
outputs, thresholds chosen on validation data, and the evaluation table.

Split by event day: ``train | delay gap | test``. Inside train, XGBoost is fit on
the earlier part and the MLPs on the later part ("blend"), where XGBoost's margin
and leaves are out-of-sample: a temporal out-of-fold that keeps the leaf indices
the MLP learns from identical to those of the XGBoost model that is served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from models import xgb as xgbm
from models.dataset import to_events, to_label_events
from models.decision import Outcome, Route, Thresholds, cascade
from models.deep import DeepArch, HybridNet, predict_proba, train_deep
from models.errors import DataError
from models.evaluation import detection_metrics
from models.features import FeatureEngine, OfflineFeatures
from models.featureset import FEATURE_NAMES
from models.intervals import card_bootstrap
from models.thresholds import band_thresholds, deep_thresholds
from models.units import DAY_MS


@dataclass(frozen=True, slots=True)
class TrainConfig:
    seed: int = 0
    test_days: int = 14
    delay_days: int = 7  # the label delay: terminal features read only days older than this
    gap_days: int | None = None  # days between training and test (labels of the gap would leak); None: delay_days
    blend_share: float = 0.3  # share of train days for the MLPs (out-of-fold for XGBoost)
    approve_max_fraud_share: float = 0.05  # the approve band holds at most this share of frauds...
    band_max_share: float = 0.2  # ...unless the ambiguous band (stage 2's load) would pass this share of traffic
    block_min_precision: float = 0.9  # the block band's precision
    review_budget: float = 0.01  # share of all transactions analysts can review
    replicates: int = 100  # card bootstrap replicates for the table's intervals (0: none)
    latency_batches: tuple[int, ...] = (1, 32, 256, 1024)


@dataclass(frozen=True)
class TrainResult:
    booster: Any
    deep: HybridNet
    mlp_only: HybridNet
    thresholds: Thresholds
    table: dict[str, dict[str, float]]
    extra: dict[str, Any]


Progress = Callable[[str], None]


def compute_features(tx: pd.DataFrame, labels: pd.DataFrame, delay_days: int) -> np.ndarray:
    """Offline features of a time-ordered table."""
    return OfflineFeatures(FeatureEngine(delay_days)).run(to_events(tx), to_label_events(labels))


def _days(tx: pd.DataFrame) -> np.ndarray:
    return np.asarray(tx["event_time"].to_numpy() // DAY_MS, dtype=np.int64)


def train_models(tx: pd.DataFrame, labels: pd.DataFrame, cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """The whole training run; deterministic for the same data and seed."""
    say = progress or (lambda _m: None)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    days = _days(tx)
    d0, d1 = int(days.min()), int(days.max())
    n_days = d1 - d0 + 1
    gap = cfg.delay_days if cfg.gap_days is None else cfg.gap_days
    if cfg.test_days < 1 or gap < 0 or not 0.0 < cfg.blend_share < 1.0:
        raise DataError(
            f"split: test_days {cfg.test_days} (>= 1), gap_days {gap} (>= 0), blend_share {cfg.blend_share} (in (0, 1))"
        )
    if n_days < cfg.test_days + gap + 7:
        raise DataError(f"{n_days} days of data: need at least {cfg.test_days + gap + 7} (test {cfg.test_days} + gap {gap} + 7)")
    y = tx["is_fraud"].to_numpy().astype(bool)
    if y.sum() < 20:
        raise DataError(f"only {int(y.sum())} frauds: need at least 20 to train")

    say(f"features for {len(tx):,} transactions")
    t = time.perf_counter()
    x = compute_features(tx, labels, cfg.delay_days)
    feature_s = time.perf_counter() - t

    test_start = d1 - cfg.test_days + 1
    train_end = test_start - gap  # exclusive: the gap lets test labels not leak
    blend_start = d0 + int((train_end - d0) * (1 - cfg.blend_share))
    fit = days < blend_start
    blend = (days >= blend_start) & (days < train_end)
    test = days >= test_start
    fit_days = np.unique(days[fit])
    es_start = fit_days[int(len(fit_days) * 0.8)]
    xfit, xes = fit & (days < es_start), fit & (days >= es_start)

    say("XGBoost")
    t = time.perf_counter()
    booster = xgbm.train_xgb(x[xfit], y[xfit], x[xes], y[xes], cfg.seed)
    xgb_s = time.perf_counter() - t
    margin = xgbm.margins(booster, x)
    leaves = xgbm.leaves(booster, x)
    xgb_p = xgbm.sigmoid(margin)

    blend_idx = np.flatnonzero(blend)
    blend_days = np.unique(days[blend_idx])
    val_start = blend_days[int(len(blend_days) * 0.7)]
    b_tr = blend_idx[days[blend_idx] < val_start]
    b_val = blend_idx[days[blend_idx] >= val_start]

    def part(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return x[idx], margin[idx], leaves[idx], y[idx]

    n_trees = booster.num_boosted_rounds()
    say(f"hybrid MLP over {n_trees} trees' leaves")
    t = time.perf_counter()
    deep = train_deep(DeepArch(len(FEATURE_NAMES), n_trees, use_xgb=True), part(b_tr), part(b_val), cfg.seed)
    deep_s = time.perf_counter() - t
    say("MLP alone")
    mlp = train_deep(DeepArch(len(FEATURE_NAMES), n_trees, use_xgb=False), part(b_tr), part(b_val), cfg.seed)

    # Thresholds on validation data only: the band on all of blend (out-of-sample for
    # XGBoost), the hybrid cut-offs on the blend's validation days (out-of-sample for both).
    approve_below, block_above = band_thresholds(
        y[blend_idx], xgb_p[blend_idx], cfg.approve_max_fraud_share, cfg.block_min_precision, cfg.band_max_share
    )
    deep_val = predict_proba(deep, *part(b_val)[:3])
    in_band = (xgb_p[b_val] >= approve_below) & (xgb_p[b_val] < block_above)
    review_above, deep_block = deep_thresholds(
        y[b_val], deep_val, in_band, len(b_val), cfg.review_budget, cfg.block_min_precision
    )
    band_all = (xgb_p[blend_idx] >= approve_below) & (xgb_p[blend_idx] < block_above)
    fallback_review, _ = deep_thresholds(
        y[blend_idx], xgb_p[blend_idx], band_all, len(blend_idx), cfg.review_budget, cfg.block_min_precision
    )
    thresholds = Thresholds(approve_below, block_above, review_above, deep_block, fallback_review)

    say("evaluation")
    table, cascade = evaluate_scores(tx[test], x[test], booster, deep, mlp, thresholds, cfg.review_budget)
    intervals = None
    if cfg.replicates:
        say(f"intervals ({cfg.replicates} card bootstrap replicates)")
        t_test = tx[test]
        intervals = card_bootstrap(
            y[test], model_scores(x[test], booster, deep, mlp), t_test["event_time"].to_numpy(),
            t_test["customer_id"].to_numpy(), cfg.review_budget, replicates=cfg.replicates, seed=cfg.seed,
        ).to_dict()  # fmt: skip
    latency = scoring_latency(booster, deep, x[test], cfg.latency_batches)
    table["xgboost"]["train_s"] = xgb_s
    table["hybrid"]["train_s"] = deep_s
    extra = {
        "train_config": asdict(cfg),
        "split": {
            "first_day": d0,
            "blend_start": int(blend_start),
            "train_end": int(train_end),
            "test_start": int(test_start),
            "last_day": d1,
        },
        "rows": {
            "fit": int(fit.sum()),
            "blend": int(blend.sum()),
            "test": int(test.sum()),
            "frauds_test": int(y[test].sum()),
        },
        "cascade_test": cascade,
        "intervals": intervals,
        "latency_ms_per_batch": latency,
        "importance_gain": xgbm.importance_gain(booster, FEATURE_NAMES),
        "timings_s": {"features": feature_s, "total": time.perf_counter() - started},
    }
    return TrainResult(booster, deep, mlp, thresholds, table, extra)


def transaction_scores(tx: pd.DataFrame, x: np.ndarray, booster: Any, deep: HybridNet, th: Thresholds) -> pd.DataFrame:
    """Per transaction: each model's score and the deployed cascade's route and outcome."""
    scores = model_scores(x, booster, deep, None)
    p, hybrid = scores["xgboost"], scores["hybrid"]
    routes, outcomes = cascade(p, hybrid, th)
    out = tx[[c for c in ("transaction_id", "event_time", "customer_id", "is_fraud") if c in tx]].copy()
    out["xgboost"], out["hybrid"] = p, hybrid
    out["route"] = [Route(int(r)).name for r in routes]
    out["decision"] = [Outcome(int(o)).name for o in outcomes]
    return out


def model_scores(x: np.ndarray, booster: Any, deep: HybridNet, mlp: HybridNet | None) -> dict[str, np.ndarray]:
    """Each model's fraud probability on feature rows x: xgboost, hybrid, mlp_alone."""
    margin = xgbm.margins(booster, x)
    lv = xgbm.leaves(booster, x)
    scores = {"xgboost": xgbm.sigmoid(margin), "hybrid": predict_proba(deep, x, margin, lv)}
    if mlp is not None:
        scores["mlp_alone"] = predict_proba(mlp, x, margin, lv)
    return scores


def evaluate_scores(
    tx: pd.DataFrame,
    x: np.ndarray,
    booster: Any,
    deep: HybridNet,
    mlp: HybridNet | None,
    th: Thresholds,
    review_budget: float,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """The evaluation table on (tx, x), and how the deployed cascade routes it."""
    y = tx["is_fraud"].to_numpy().astype(bool)
    et, cust = tx["event_time"].to_numpy(), tx["customer_id"].to_numpy()
    scores = model_scores(x, booster, deep, mlp)
    table = {name: detection_metrics(y, s, et, cust, review_budget) for name, s in scores.items()}
    p = scores["xgboost"]
    routes, outcomes = cascade(p, scores["hybrid"], th)
    band = routes == Route.DEEP
    approve, block = outcomes == Outcome.APPROVE, outcomes == Outcome.BLOCK
    review = outcomes == Outcome.REVIEW
    shares = {
        "band_share": float(band.mean()),
        "approve_share": float(approve.mean()),
        "review_share": float(review.mean()),
        "block_share": float(block.mean()),
        "fraud_caught_share": float((y & ~approve).sum() / max(y.sum(), 1)),
        "block_precision": float((y & block).sum() / max(block.sum(), 1)),
    }
    return table, shares


def scoring_latency(booster: Any, deep: HybridNet, x: np.ndarray, sizes: tuple[int, ...]) -> dict[str, float]:
    """Median milliseconds to score one batch with XGBoost then the hybrid, per batch size."""
    out: dict[str, float] = {}
    for n in sizes:
        xb = np.resize(x, (n, x.shape[1])).astype(np.float32)
        runs = []
        for _ in range(7):
            t = time.perf_counter()
            m = xgbm.margins(booster, xb)
            predict_proba(deep, xb, m, xgbm.leaves(booster, xb))
            runs.append((time.perf_counter() - t) * 1000)
        out[str(n)] = float(np.median(runs))
    return out
