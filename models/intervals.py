"""Intervals for detection metrics: a paired bootstrap over cards, fixed seed.

Transactions of one card are not independent (a compromised card brings a burst of
frauds), so the unit resampled is the card: each replicate weights every card by a
Poisson(1) draw (the Poisson bootstrap; a card drawn twice counts as two cards) and
recomputes every metric of every model on the same replicate. Differences between two
models are taken replicate by replicate — paired — so what both models find hard cancels
out. An interval is the 2.5th–97.5th percentile of the replicates; a difference whose
interval contains 0 is not a difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.evaluation import detection_metrics

LEVEL = 0.95
DEFAULT_REPLICATES = 200


@dataclass(frozen=True, slots=True)
class Interval:
    point: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.point:.4f} [{self.low:.4f}, {self.high:.4f}]"

    def to_dict(self) -> dict[str, float]:
        return {"point": self.point, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Bootstrapped:
    """Per model and metric an Interval; per (model − baseline) and metric the paired difference."""

    metrics: dict[str, dict[str, Interval]]
    differences: dict[str, dict[str, Interval]]
    replicates: int
    cards: int

    def to_dict(self) -> dict[str, object]:
        return {
            "level": LEVEL,
            "replicates": self.replicates,
            "cards": self.cards,
            "metrics": {m: {k: v.to_dict() for k, v in row.items()} for m, row in self.metrics.items()},
            "differences": {m: {k: v.to_dict() for k, v in row.items()} for m, row in self.differences.items()},
        }


def interval(centre: float, values: list[float]) -> Interval:
    """The LEVEL percentile interval of replicate values around the point estimate."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if not arr.size:
        return Interval(centre, float("nan"), float("nan"))
    tail = (1 - LEVEL) / 2 * 100
    return Interval(centre, float(np.percentile(arr, tail)), float(np.percentile(arr, 100 - tail)))


def card_bootstrap(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    event_time: np.ndarray,
    customer: np.ndarray,
    budget: float = 0.01,
    baseline: str = "xgboost",
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
) -> Bootstrapped:
    """Intervals of `detection_metrics` for every model, and paired differences against `baseline`."""
    y = np.asarray(y, dtype=bool)
    et = np.asarray(event_time)
    cards, card_of_row = np.unique(np.asarray(customer), return_inverse=True)
    point = {m: detection_metrics(y, s, et, card_of_row, budget) for m, s in scores.items()}
    rng = np.random.default_rng(seed)
    draws: dict[str, dict[str, list[float]]] = {m: {} for m in scores}
    diffs: dict[str, dict[str, list[float]]] = {m: {} for m in scores if m != baseline}
    for _ in range(replicates):
        weight = rng.poisson(1.0, size=len(cards))
        w_row = weight[card_of_row]
        rows = np.repeat(np.arange(len(y)), w_row)
        # the k-th copy of a card is a card of its own (card precision counts cards)
        copy = np.arange(len(rows)) - np.repeat(np.cumsum(w_row) - w_row, w_row)
        ids = card_of_row[rows].astype(np.int64) * (int(weight.max()) + 1) + copy
        got = {m: detection_metrics(y[rows], np.asarray(s)[rows], et[rows], ids, budget) for m, s in scores.items()}
        for m, row in got.items():
            for k, v in row.items():
                draws[m].setdefault(k, []).append(v)
                if m in diffs and baseline in got:
                    diffs[m].setdefault(k, []).append(v - got[baseline][k])

    metrics = {m: {k: interval(point[m][k], v) for k, v in draws[m].items()} for m in scores}
    differences = {
        m: {k: interval(point[m][k] - point[baseline][k], v) for k, v in row.items()}
        for m, row in diffs.items()
        if baseline in point
    }
    return Bootstrapped(metrics, differences, replicates, len(cards))


def scenario_recall(
    y: np.ndarray,
    scenario: np.ndarray,
    scores: Mapping[str, np.ndarray],
    customer: np.ndarray,
    budget: float = 0.01,
    baseline: str = "xgboost",
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
) -> dict[str, dict[str, Interval | int]]:
    """Per fraud scenario: its frauds, each model's recall at the review budget (the share of
    the scenario's frauds among the top `budget` share of all transactions) and the paired
    difference from `baseline`, over the same card bootstrap as `card_bootstrap`."""
    y = np.asarray(y, dtype=bool)
    tags = np.asarray(scenario).astype(str)
    kinds = sorted({t for t in tags[y].tolist() if t})
    _cards, card_of_row = np.unique(np.asarray(customer), return_inverse=True)

    def recalls(rows: np.ndarray) -> dict[str, dict[str, float]]:
        n = max(1, round(len(rows) * budget))
        out: dict[str, dict[str, float]] = {}
        for m, s in scores.items():
            flagged = np.zeros(len(rows), dtype=bool)
            flagged[np.argsort(-np.asarray(s)[rows], kind="stable")[:n]] = True
            out[m] = {k: float(flagged[tags[rows] == k].mean()) if (tags[rows] == k).any() else float("nan") for k in kinds}
        return out

    point = recalls(np.arange(len(y)))
    rng = np.random.default_rng(seed)
    draws: dict[str, dict[str, list[float]]] = {m: {k: [] for k in kinds} for m in scores}
    for _ in range(replicates):
        weight = rng.poisson(1.0, size=card_of_row.max(initial=0) + 1)
        got = recalls(np.repeat(np.arange(len(y)), weight[card_of_row]))
        for m in scores:
            for k in kinds:
                draws[m][k].append(got[m][k] - (got[baseline][k] if m != baseline else 0.0))

    table: dict[str, dict[str, Interval | int]] = {}
    for k in kinds:
        row: dict[str, Interval | int] = {"frauds": int((y & (tags == k)).sum())}
        for m in scores:
            if m == baseline:
                row[m] = interval(point[m][k], draws[m][k])
            else:
                row[m] = interval(point[m][k], [v + b for v, b in zip(draws[m][k], draws[baseline][k], strict=True)])
                row[f"{m} − {baseline}"] = interval(point[m][k] - point[baseline][k], draws[m][k])
        table[k] = row
    return table


def card_share(hit: np.ndarray, of: np.ndarray, customer: np.ndarray, replicates: int = DEFAULT_REPLICATES,
               seed: int = 0, minus: np.ndarray | None = None) -> Interval:  # fmt: skip
    """The share of the `of` rows that are also `hit` (say, frauds not approved among frauds),
    with its interval over the same card bootstrap; with `minus`, the paired difference of that
    share and `minus`'s, replicate by replicate. A replicate without any `of` row is left out."""
    of = np.asarray(of, dtype=bool)
    cards, card = np.unique(np.asarray(customer), return_inverse=True)
    n_of = np.bincount(card, weights=of, minlength=len(cards))
    n_hit = np.bincount(card, weights=np.asarray(hit, dtype=bool) & of, minlength=len(cards))
    if minus is not None:
        n_hit = n_hit - np.bincount(card, weights=np.asarray(minus, dtype=bool) & of, minlength=len(cards))
    weight = np.random.default_rng(seed).poisson(1.0, size=(replicates, len(cards))).astype(np.float64)
    total = weight @ n_of
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(total > 0, (weight @ n_hit) / total, np.nan)
    return interval(float(n_hit.sum() / n_of.sum()) if n_of.sum() else float("nan"), values.tolist())
