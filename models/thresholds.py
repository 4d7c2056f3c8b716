"""Choosing the cut-offs on validation data: the approve/block band on the XGBoost score
(stage 1's load on stage 2 bounded) and the hybrid model's REVIEW/BLOCK cut-offs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.decision import Thresholds

# The most of all traffic the ambiguous band may hold: stage 2's load, bounded (`band_thresholds`).
BAND_MAX_SHARE = 0.2


def band_thresholds(
    y: np.ndarray, p: np.ndarray, max_fraud_share: float, min_precision: float, max_band_share: float = 1.0
) -> tuple[float, float]:
    """approve_below: the highest cut keeping <= max_fraud_share of frauds below it, raised
    where needed so that at most max_band_share of traffic scores at or above it;
    block_above: the lowest cut whose band above has precision >= min_precision."""
    order = np.argsort(p, kind="mergesort")
    ps, ys = p[order], y[order].astype(bool)
    frauds_below = np.cumsum(ys)
    allowed = max_fraud_share * ys.sum()
    ok = np.flatnonzero(frauds_below <= allowed)
    approve_below = float(ps[ok[-1]]) if ok.size else 0.0
    if max_band_share < 1.0:
        # The deep stage's capacity: the frauds this pushes into the approve band score so
        # low on XGBoost that the review budget would not have reached them anyway.
        approve_below = max(approve_below, float(np.quantile(ps, 1.0 - max_band_share)))
    # precision of the band [ps[i], 1]
    above_frauds = ys[::-1].cumsum()[::-1]
    above_n = np.arange(len(ps), 0, -1)
    precision = above_frauds / above_n
    good = np.flatnonzero((precision >= min_precision) & (above_frauds >= 5))
    block_above = float(ps[good[0]]) if good.size else 1.01  # never block on XGBoost alone
    block_above = max(block_above, approve_below + 1e-6)
    return approve_below, block_above


def deep_thresholds(
    y: np.ndarray, deep_p: np.ndarray, band: np.ndarray, n_total: int, review_budget: float, min_precision: float
) -> tuple[float, float]:
    """REVIEW/BLOCK on the hybrid score within the band: block where precision holds,
    review the highest-scoring rest up to the review budget of all traffic."""
    yb, pb = y[band], deep_p[band]
    if yb.size == 0:
        return 0.5, 0.9
    _, deep_block = band_thresholds(yb, pb, 0.0, min_precision)
    capacity = max(1, int(review_budget * n_total))
    ranked = np.sort(pb)[::-1]
    review = float(ranked[min(capacity, len(ranked)) - 1])
    return min(review, deep_block), deep_block


@dataclass(frozen=True)
class Validation:
    """What the cut-offs are chosen on: the blend days (out of sample for XGBoost) and, within
    them, the validation days (out of sample for the hybrid too), with both models' scores."""

    y_blend: np.ndarray
    xgb_blend: np.ndarray
    y_val: np.ndarray
    xgb_val: np.ndarray
    hybrid_val: np.ndarray

    def thresholds(self, band_max_share: float, approve_max_fraud_share: float, block_min_precision: float,
                   review_budget: float) -> Thresholds:  # fmt: skip
        """The deployed cut-offs for a cap on the ambiguous band."""
        approve_below, block_above = band_thresholds(
            self.y_blend, self.xgb_blend, approve_max_fraud_share, block_min_precision, band_max_share
        )
        in_band = (self.xgb_val >= approve_below) & (self.xgb_val < block_above)
        review_above, deep_block = deep_thresholds(
            self.y_val, self.hybrid_val, in_band, len(self.y_val), review_budget, block_min_precision
        )
        band_all = (self.xgb_blend >= approve_below) & (self.xgb_blend < block_above)
        fallback_review, _ = deep_thresholds(
            self.y_blend, self.xgb_blend, band_all, len(self.y_blend), review_budget, block_min_precision
        )
        return Thresholds(approve_below, block_above, review_above, deep_block, fallback_review)
