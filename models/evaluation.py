"""Detection metrics, computed with numpy only.

- AUC ROC and average precision over transactions;
- card precision@k per day: each day, the k cards with the highest score among
  cards not already caught on earlier days; the share that really had fraud that
  day, averaged over days (the measure a team of k investigators sees);
- recall at the review budget: the share of frauds among the top `budget` share
  of transactions by score.
"""

from __future__ import annotations

import numpy as np

from models.units import DAY_MS


def auc_roc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties get average ranks)."""
    y = np.asarray(y, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # average ranks for ties
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision (area under the precision-recall step curve)."""
    y = np.asarray(y, dtype=bool)
    pos = int(y.sum())
    if pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score), kind="mergesort")
    hits = y[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / pos)


def card_precision_at_k(event_time: np.ndarray, customer: np.ndarray, y: np.ndarray, score: np.ndarray, k: int = 100) -> float:
    """Mean over days of the fraud share among the day's top-k cards not caught before."""
    day = np.asarray(event_time) // DAY_MS
    caught: set[str] = set()
    values = []
    for d in np.unique(day):
        m = day == d
        cards = np.asarray(customer)[m]
        s = np.asarray(score)[m]
        f = np.asarray(y, dtype=bool)[m]
        # per card: max score, any fraud that day
        uniq, inv = np.unique(cards, return_inverse=True)
        best = np.full(len(uniq), -np.inf)
        np.maximum.at(best, inv, s)
        fraud = np.zeros(len(uniq), dtype=bool)
        np.logical_or.at(fraud, inv, f)
        fresh = np.array([c not in caught for c in uniq], dtype=bool)
        cand = np.flatnonzero(fresh)
        top = cand[np.argsort(-best[cand], kind="mergesort")[:k]]
        values.append(fraud[top].sum() / k)
        caught.update(uniq[top[fraud[top]]].tolist())
    return float(np.mean(values)) if values else float("nan")


def recall_at_budget(y: np.ndarray, score: np.ndarray, budget: float = 0.01) -> float:
    """Share of frauds among the top `budget` share of transactions."""
    y = np.asarray(y, dtype=bool)
    if not y.any():
        return float("nan")
    n = max(1, round(len(y) * budget))
    top = np.argsort(-np.asarray(score), kind="mergesort")[:n]
    return float(y[top].sum() / y.sum())


def detection_metrics(
    y: np.ndarray, score: np.ndarray, event_time: np.ndarray, customer: np.ndarray, budget: float = 0.01
) -> dict[str, float]:
    """The evaluation table's metrics for one model."""
    return {
        "auc_roc": auc_roc(y, score),
        "average_precision": average_precision(y, score),
        "card_precision_at_100": card_precision_at_k(event_time, customer, y, score, 100),
        "recall_at_budget": recall_at_budget(y, score, budget),
    }
