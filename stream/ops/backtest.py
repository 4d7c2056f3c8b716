"""Backtests: what would a model have decided for a time range, and how good was it?

Reads the range from the topics themselves (`offsets_for_times` on record
timestamps), rebuilds feature state from a look-back before the range in memory — an
isolated namespace by construction, live Redis is never touched — scores the
window in event order with the same pieces as the live stages, joins labels, and
compares with the decisions actually published for the same transactions.

Features: a published decision carries the vector it was scored on, so by default
(`features="auto"`) a transaction live decided is scored on exactly what live saw,
and the rebuild is used only where no usable vector was published; the report says
how many rows came from each and how often the rebuild agrees with live. State live
had that the topic's look-back does not (a warm-up, a backfill) shows up there
instead of silently changing the numbers. `features="rebuilt"` scores the rebuild
only (a candidate evaluated as if deployed from scratch).

The report's `warnings` name what makes its numbers unreliable: no warm-up, a rebuild
that disagrees with live, labels not yet mature for the window, no fraud labels, live
decisions missing or taken in degraded mode (those a model cannot reproduce).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from models.artifacts import ModelBundle
from models.dataset import read_table
from models.decision import OUTCOME_NAMES, ROUTE_NAMES, Thresholds
from models.evaluation import detection_metrics
from models.features import FeatureEngine
from models.featureset import FEATURE_SET_VERSION
from models.offline import OfflineFeatures
from models.units import DAY_MS
from stream.config import DeepSettings, KafkaSettings
from stream.errors import ConfigError, PoisonError
from stream.kafka.schema_registry import codec_for
from stream.ops.provenance import DEGRADED_ROUTES, carried_features, provenance, warnings
from stream.ops.timerange import read_range
from stream.records import Decision
from stream.stages.inline import Scored, score_both
from stream.stages.runtime import DeviceRunner

SWEEP = np.round(np.linspace(0.0, 1.0, 41), 3)
FeatureSource = Literal["auto", "live", "rebuilt"]


@dataclass
class BacktestData:
    """Everything a backtest reads, so that it can also be built without Kafka."""

    history: list[dict[str, Any]]  # events before the window (warm-up), any order
    window: list[dict[str, Any]]  # events in the window
    labels: list[dict[str, Any]]  # fraud labels (transaction_id, terminal_id, event_time, label_time, is_fraud)
    live: dict[str, Decision] = field(default_factory=dict)  # transaction id -> published decision
    unreadable: int = 0
    start_ms: int | None = None  # the window, in record time, when read from Kafka
    end_ms: int | None = None
    lookback_days: float | None = None


def _event_order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Event time, then the order the live stage read them in (per partition, by offset).
    return sorted(events, key=lambda e: (e["event_time"], e.get("_partition", 0), e.get("_offset", 0)))


def load(
    kafka: KafkaSettings,
    start_ms: int,
    end_ms: int,
    lookback_days: float,
    labels_file: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> BacktestData:
    """Read the window, its look-back, the labels and the published decisions from Kafka."""
    say = progress or (lambda _m: None)
    codec = codec_for(kafka)
    t = kafka.topics
    say("reading transactions")
    history: list[dict[str, Any]] = []
    window: list[dict[str, Any]] = []
    bad = 0
    for m in read_range(kafka, t.transactions, start_ms - int(lookback_days * DAY_MS), end_ms):
        try:
            tx = codec.decode("Transaction", m.value())
        except PoisonError:
            bad += 1  # unreadable records went to the DLQ live; they are counted, not scored
            continue
        _, ts = m.timestamp()
        tx |= {"_partition": m.partition(), "_offset": m.offset()}
        (window if ts >= start_ms else history).append(tx)
    say("reading labels")
    if labels_file is not None:
        table = read_table(labels_file)
        labels = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in table.to_dict("records")]
    else:
        labels = [codec.decode("Label", m.value()) for m in read_range(kafka, t.labels, 0, None)]
    say("reading published decisions")
    ids = {e["transaction_id"] for e in window}
    live: dict[str, Decision] = {}
    for m in read_range(kafka, t.decisions, start_ms, None):
        d = codec.decode_decision(m.value())
        if d.transaction_id in ids:
            live[d.transaction_id] = d
    return BacktestData(history, window, labels, live, bad, start_ms, end_ms, lookback_days)


@dataclass(frozen=True)
class BacktestResult:
    events: list[dict[str, Any]]
    features: np.ndarray  # (n, F) float32: what each row was scored on
    scored: Scored
    y: np.ndarray  # (n,) bool
    metrics: dict[str, Any]
    rebuilt: np.ndarray | None = None  # (n, F) the features rebuilt from the topic
    carried: np.ndarray | None = None  # (n,) bool: rows scored on the features live published


def run(
    bundle: ModelBundle,
    data: BacktestData,
    review_budget: float = 0.01,
    pad_sizes: tuple[int, ...] = DeepSettings().pad_sizes,
    features: FeatureSource = "auto",
    deployed: Thresholds | None = None,
) -> BacktestResult:
    """Score the window offline and measure it; deterministic for the same data and model.
    `deployed`: the live version's thresholds, drawn on the sweep beside the candidate's."""
    delay = bundle.delay_days
    history, window = _event_order(data.history), _event_order(data.window)
    labels = sorted((lab for lab in data.labels if lab.get("is_fraud")), key=lambda lab: lab["label_time"])
    rows = OfflineFeatures(FeatureEngine(delay)).rows([*history, *window], labels)[len(history) :]
    rebuilt, live = rows.x, carried_features(window, data.live)
    carried, have = live.x, ~np.isnan(live.x).all(axis=1)
    if features == "live" and not have.all():
        raise ConfigError(
            f"features: live — {int((~have).sum())} of {len(window)} window transactions have no published "
            f"feature vector of set {FEATURE_SET_VERSION!r}; use auto or rebuilt"
        )
    use = have if features != "rebuilt" else np.zeros(len(window), dtype=bool)
    x, seq = rebuilt.copy(), rows.seq.copy()
    x[use], seq[use] = carried[use], live.seq[use]
    runner = DeviceRunner(bundle.net, torch.device("cpu"), pad_sizes, 1.0)
    scored = score_both(bundle, runner, x, seq)
    frauds = {lab["transaction_id"] for lab in labels}
    y = np.array([e["transaction_id"] in frauds for e in window], dtype=bool)
    metrics = measure(window, scored, y, data, bundle, review_budget)
    metrics |= provenance(window, data, bundle, rebuilt, carried, have, use, deployed)
    metrics["warnings"] = warnings(metrics)
    return BacktestResult(window, x, scored, y, metrics, rebuilt, use)


def _counts(routes: Sequence[str], outcomes: Sequence[str]) -> dict[str, int]:
    return {f"{r}/{o}": n for (r, o), n in sorted(Counter(zip(routes, outcomes, strict=True)).items())}


def sweep(score: np.ndarray, y: np.ndarray, amounts: np.ndarray) -> dict[str, list[float]]:
    """Flag everything at or above t: share flagged, frauds caught, fraud amount saved — per t."""
    total_fraud_amount = max(float(amounts[y].sum()), 1.0)
    flagged = [float((score >= t).mean()) for t in SWEEP]
    caught = [float((y & (score >= t)).sum() / max(y.sum(), 1)) for t in SWEEP]
    saved = [float(amounts[y & (score >= t)].sum() / total_fraud_amount) for t in SWEEP]
    return {"threshold": SWEEP.tolist(), "flagged_share": flagged, "fraud_caught": caught, "amount_saved": saved}


def measure(
    events: list[dict[str, Any]], scored: Scored, y: np.ndarray, data: BacktestData, bundle: ModelBundle, budget: float
) -> dict[str, Any]:
    et = np.array([e["event_time"] for e in events], dtype=np.int64)
    cust = np.array([e["customer_id"] for e in events])
    amounts = np.array([e["amount"] for e in events], dtype=np.float64) / 100
    routes = [ROUTE_NAMES[r] for r in scored.routes]
    outcomes = [OUTCOME_NAMES[o] for o in scored.outcomes]
    flagged = scored.outcomes != 0
    out: dict[str, Any] = {
        "window": {
            "transactions": len(events),
            "frauds": int(y.sum()),
            "warm_up_transactions": len(data.history),
            "unreadable": data.unreadable,
        },
        "candidate": {
            "model_version": bundle.version,
            "detection": detection_metrics(y, scored.score, et, cust, budget) if len(events) else {},
            "xgboost_detection": detection_metrics(y, scored.xgb_p, et, cust, budget) if len(events) else {},
            "decisions": _counts(routes, outcomes),
            "fraud_caught": float((y & flagged).sum() / max(y.sum(), 1)),
            "amount_saved": float(amounts[y & flagged].sum() / max(amounts[y].sum(), 1.0)),
            "block_precision": float((y & (scored.outcomes == 2)).sum() / max((scored.outcomes == 2).sum(), 1)),
            "sweep": sweep(scored.score, y, amounts),
        },
    }
    live = [data.live.get(e["transaction_id"]) for e in events]
    have = np.array([d is not None for d in live])
    if have.any():
        lv = [d for d in live if d is not None]
        live_score = np.array([d.score for d in lv], dtype=np.float32)
        lat = np.array([d.latency_ms for d in lv])
        same = np.array([d.outcome.name == outcomes[i] for i, d in enumerate(live) if d is not None])
        score_diff = np.abs(live_score - scored.score[have])
        confusion = Counter((d.outcome.name, outcomes[i]) for i, d in enumerate(live) if d is not None)
        degraded = np.array([d.route.name in DEGRADED_ROUTES for d in lv], dtype=bool)
        out["live"] = {
            "decisions_found": int(have.sum()),
            "missing": int((~have).sum()),
            "degraded": int(degraded.sum()),
            "model_versions": sorted({d.model_version for d in lv}),
            "detection": detection_metrics(y[have], live_score, et[have], cust[have], budget),
            "decisions": _counts([d.route.name for d in lv], [d.outcome.name for d in lv]),
            "latency_ms": {
                "p50": float(np.percentile(lat, 50)),
                "p99": float(np.percentile(lat, 99)),
                "max": float(lat.max()),
                "values": lat.tolist(),
            },
        }
        out["comparison"] = {
            "same_decision": float(same.mean()),
            "same_decision_normal": float(same[~degraded].mean()) if (~degraded).any() else None,
            "max_score_difference": float(score_diff.max()),
            "confusion_live_vs_candidate": {f"{a}->{b}": n for (a, b), n in sorted(confusion.items())},
        }
    return out
