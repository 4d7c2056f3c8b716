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
from models.bandsweep import band_sweep
from models.dataset import to_events, to_label_events
from models.decision import Thresholds
from models.deep import DeepArch, HybridNet, Rows, predict_proba, train_deep
from models.errors import DataError
from models.features import FeatureEngine
from models.featureset import FEATURE_NAMES, N_FEATURES
from models.intervals import card_bootstrap, scenario_recall
from models.offline import FeatureRows, OfflineFeatures
from models.scoring import evaluate_scores, model_scores, scoring_latency
from models.sequence import N_SEQ, SEQ_LEN
from models.thresholds import BAND_MAX_SHARE, Validation
from models.units import DAY_MS


@dataclass(frozen=True, slots=True)
class TrainConfig:
    seed: int = 0
    test_days: int = 14
    delay_days: int = 7  # the label delay: terminal features read only days older than this
    gap_days: int | None = None  # days between training and test (labels of the gap would leak); None: delay_days
    blend_share: float = 0.3  # share of train days for the MLPs (out-of-fold for XGBoost)
    approve_max_fraud_share: float = 0.05  # the approve band holds at most this share of frauds...
    band_max_share: float = BAND_MAX_SHARE  # ...unless the ambiguous band (stage 2's load) would pass this share of traffic
    block_min_precision: float = 0.9  # the block band's precision
    review_budget: float = 0.01  # share of all transactions analysts can review
    replicates: int = 100  # card bootstrap replicates for the table's intervals (0: none)
    latency_batches: tuple[int, ...] = (1, 32, 256, 1024)
    encoder: str = "conv"  # the hybrid's sequence encoder, "conv" or "gru": see docs/models.md for the measurement


@dataclass(frozen=True)
class TrainResult:
    booster: Any
    deep: HybridNet
    mlp_only: HybridNet
    thresholds: Thresholds
    table: dict[str, dict[str, float]]
    extra: dict[str, Any]


Progress = Callable[[str], None]


def compute_rows(tx: pd.DataFrame, labels: pd.DataFrame, delay_days: int) -> FeatureRows:
    """Offline features and card sequences of a time-ordered table."""
    return OfflineFeatures(FeatureEngine(delay_days)).rows(to_events(tx), to_label_events(labels))


def compute_features(tx: pd.DataFrame, labels: pd.DataFrame, delay_days: int) -> np.ndarray:
    """Offline features of a time-ordered table."""
    return compute_rows(tx, labels, delay_days).x


def _days(tx: pd.DataFrame) -> np.ndarray:
    return np.asarray(tx["event_time"].to_numpy() // DAY_MS, dtype=np.int64)


def train_models(tx: pd.DataFrame, labels: pd.DataFrame, cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """The whole training run; deterministic for the same data and seed."""
    say = progress or (lambda _m: None)
    torch.set_num_threads(2)
    # Bit-reproducible on the CPU; on a GPU some kernels (embedding-bag backward) have no deterministic form.
    torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
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
    rows = compute_rows(tx, labels, cfg.delay_days)
    x, seq = rows.x, rows.seq
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

    def part(idx: np.ndarray) -> Rows:
        return x[idx], seq[idx], margin[idx], leaves[idx], y[idx]

    n_trees = booster.num_boosted_rounds()
    say(f"hybrid MLP over {n_trees} trees' leaves")
    t = time.perf_counter()
    arch = DeepArch(N_FEATURES, n_trees, seq_len=SEQ_LEN, seq_fields=N_SEQ, encoder=cfg.encoder, residual=True)
    deep = train_deep(arch, part(b_tr), part(b_val), cfg.seed, progress=lambda m: say("  " + m))
    deep_s = time.perf_counter() - t
    say("MLP alone")
    mlp = train_deep(DeepArch(N_FEATURES, n_trees, use_xgb=False), part(b_tr), part(b_val), cfg.seed)
    mlp_s = time.perf_counter() - t - deep_s

    # Thresholds on validation data only: the band on all of blend (out-of-sample for
    # XGBoost), the hybrid cut-offs on the blend's validation days (out-of-sample for both).
    deep_val = predict_proba(deep, x[b_val], margin[b_val], leaves[b_val], seq[b_val])
    val = Validation(y[blend_idx], xgb_p[blend_idx], y[b_val], xgb_p[b_val], deep_val)

    def choose(cap: float) -> Thresholds:
        return val.thresholds(cap, cfg.approve_max_fraud_share, cfg.block_min_precision, cfg.review_budget)

    thresholds = choose(cfg.band_max_share)

    say("evaluation")
    t_eval = time.perf_counter()
    table, cascade = evaluate_scores(tx[test], rows[test], booster, deep, mlp, thresholds, cfg.review_budget)
    t_test = tx[test]
    scores = model_scores(rows[test], booster, deep, mlp)
    intervals = None
    if cfg.replicates:
        say(f"intervals ({cfg.replicates} card bootstrap replicates)")
        intervals = card_bootstrap(
            y[test], scores, t_test["event_time"].to_numpy(),
            t_test["customer_id"].to_numpy(), cfg.review_budget, replicates=cfg.replicates, seed=cfg.seed,
        ).to_dict()  # fmt: skip
    sweep = band_sweep(choose, scores["xgboost"], scores["hybrid"], y[test], t_test["customer_id"].to_numpy(),
                       cfg.band_max_share, seed=cfg.seed)  # fmt: skip
    by_scenario = None
    if "scenario" in t_test:
        by_scenario = {k: {m: v if isinstance(v, int) else v.to_dict() for m, v in row.items()} for k, row in scenario_recall(
            y[test], t_test["scenario"].to_numpy(), scores, t_test["customer_id"].to_numpy(), cfg.review_budget,
            replicates=cfg.replicates, seed=cfg.seed).items()}  # fmt: skip
    eval_s = time.perf_counter() - t_eval
    latency = scoring_latency(booster, deep, rows[test], cfg.latency_batches)
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
        "band_sweep": sweep,
        "intervals": intervals,
        "by_scenario": by_scenario,
        "latency_ms_per_batch": latency,
        "importance_gain": xgbm.importance_gain(booster, FEATURE_NAMES),
        "timings_s": {
            "features": feature_s,
            "xgboost": xgb_s,
            "hybrid": deep_s,
            "mlp_alone": mlp_s,
            "evaluation": eval_s,
            "total": time.perf_counter() - started,
        },
    }
    return TrainResult(booster, deep, mlp, thresholds, table, extra)
