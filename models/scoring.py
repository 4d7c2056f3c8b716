"""Scoring held-out data with a trained pair: each model's scores, the evaluation table,
the deployed cascade's routes, per-scenario recall and batch latency."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from models import xgb as xgbm
from models.decision import Outcome, Route, Thresholds, cascade
from models.deep import HybridNet, predict_proba
from models.evaluation import detection_metrics
from models.intervals import card_share
from models.offline import FeatureRows


def transaction_scores(tx: pd.DataFrame, rows: FeatureRows, booster: Any, deep: HybridNet, th: Thresholds) -> pd.DataFrame:
    """Per transaction: each model's score and the deployed cascade's route and outcome."""
    scores = model_scores(rows, booster, deep, None)
    p, hybrid = scores["xgboost"], scores["hybrid"]
    routes, outcomes = cascade(p, hybrid, th)
    out = tx[[c for c in ("transaction_id", "event_time", "customer_id", "is_fraud") if c in tx]].copy()
    out["xgboost"], out["hybrid"] = p, hybrid
    out["route"] = [Route(int(r)).name for r in routes]
    out["decision"] = [Outcome(int(o)).name for o in outcomes]
    return out


def model_scores(rows: FeatureRows, booster: Any, deep: HybridNet, mlp: HybridNet | None) -> dict[str, np.ndarray]:
    """Each model's fraud probability on feature rows: xgboost, hybrid, mlp_alone."""
    margin = xgbm.margins(booster, rows.x)
    lv = xgbm.leaves(booster, rows.x)
    scores = {"xgboost": xgbm.sigmoid(margin), "hybrid": predict_proba(deep, rows.x, margin, lv, rows.seq)}
    if mlp is not None:
        scores["mlp_alone"] = predict_proba(mlp, rows.x, margin, lv, rows.seq)
    return scores


def evaluate_scores(
    tx: pd.DataFrame,
    rows: FeatureRows,
    booster: Any,
    deep: HybridNet,
    mlp: HybridNet | None,
    th: Thresholds,
    review_budget: float,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """The evaluation table on (tx, x), and how the deployed cascade routes it."""
    y = tx["is_fraud"].to_numpy().astype(bool)
    et, cust = tx["event_time"].to_numpy(), tx["customer_id"].to_numpy()
    scores = model_scores(rows, booster, deep, mlp)
    table = {name: detection_metrics(y, s, et, cust, review_budget) for name, s in scores.items()}
    p = scores["xgboost"]
    routes, outcomes = cascade(p, scores["hybrid"], th)
    band = routes == Route.DEEP
    approve, block = outcomes == Outcome.APPROVE, outcomes == Outcome.BLOCK
    review = outcomes == Outcome.REVIEW
    caught = card_share(~approve, y, cust)
    shares = {
        "band_share": float(band.mean()),
        "approve_share": float(approve.mean()),
        "review_share": float(review.mean()),
        "block_share": float(block.mean()),
        "fraud_caught_share": caught.point,
        "fraud_caught_low": caught.low,  # the card-bootstrap interval (models.intervals)
        "fraud_caught_high": caught.high,
        "block_precision": float((y & block).sum() / max(block.sum(), 1)),
    }
    return table, shares


def scoring_latency(booster: Any, deep: HybridNet, rows: FeatureRows, sizes: tuple[int, ...]) -> dict[str, float]:
    """Median milliseconds to score one batch with XGBoost then the hybrid, per batch size."""
    out: dict[str, float] = {}
    for n in sizes:
        pick = np.resize(np.arange(len(rows)), n)
        xb, sb = rows.x[pick], rows.seq[pick]
        runs = []
        for _ in range(7):
            t = time.perf_counter()
            m = xgbm.margins(booster, xb)
            predict_proba(deep, xb, m, xgbm.leaves(booster, xb), sb)
            runs.append((time.perf_counter() - t) * 1000)
        out[str(n)] = float(np.median(runs))
    return out
