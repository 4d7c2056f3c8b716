"""What a backtest's numbers rest on, and what makes them unreliable.

`provenance` describes the window, the warm-up, where each row's features came from (live's
published vector or the rebuild from the topic, and how often the two agree), the labels and
their maturity, and the thresholds; `warnings` turns that into sentences for the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from models.artifacts import ModelBundle
from models.decision import Thresholds
from models.featureset import FEATURE_NAMES, FEATURE_SET_VERSION, N_FEATURES
from models.offline import FeatureRows
from models.sequence import N_SEQ, SEQ_LEN
from models.units import DAY_MS
from stream.records import Decision

if TYPE_CHECKING:
    from stream.ops.backtest import BacktestData

#: share of the window whose labels should have arrived below which the report warns
MATURE_ENOUGH = 0.9
DEGRADED_ROUTES = ("XGB_FALLBACK", "RULES", "SAFE_DEFAULT")


def carried_features(window: Sequence[dict[str, Any]], live: dict[str, Decision]) -> FeatureRows:
    """The feature vectors (n, F) and card sequences (n, L, S) live decisions published for the
    window; rows without (see `Decision.carries_state`) hold NaN features."""
    x = np.full((len(window), N_FEATURES), np.nan, dtype=np.float32)
    seq = np.zeros((len(window), SEQ_LEN, N_SEQ), dtype=np.float32)
    for i, e in enumerate(window):
        d = live.get(e["transaction_id"])
        if d is not None and d.carries_state():
            x[i] = d.features
            seq[i] = np.asarray(d.sequence, dtype=np.float32).reshape(SEQ_LEN, N_SEQ)
    return FeatureRows(x, seq)


def provenance(
    window: list[dict[str, Any]],
    data: BacktestData,
    bundle: ModelBundle,
    rebuilt: np.ndarray,
    carried: np.ndarray,
    have: np.ndarray,
    use: np.ndarray,
    deployed: Thresholds | None,
) -> dict[str, Any]:
    """Where the numbers come from: window, warm-up, features, labels, thresholds."""
    same = np.isclose(rebuilt, carried, rtol=1e-6, atol=1e-6, equal_nan=True)
    rows_same = same.all(axis=1)
    per_feature = (~same[have]).sum(axis=0) if have.any() else np.zeros(N_FEATURES, dtype=int)
    differing = {FEATURE_NAMES[i]: int(per_feature[i]) for i in np.argsort(-per_feature, kind="stable") if per_feature[i]}
    et = np.array([e["event_time"] for e in window], dtype=np.int64)
    label_times = [int(lab["label_time"]) for lab in data.labels]
    latest = max(label_times) if label_times else None
    delay_ms = bundle.delay_days * DAY_MS
    mature = float((et + delay_ms <= latest).mean()) if latest is not None and len(et) else 0.0
    ids = {e["transaction_id"] for e in window}
    labelled = {lab["transaction_id"] for lab in data.labels if lab["transaction_id"] in ids}
    fraud_labelled = {lab["transaction_id"] for lab in data.labels if lab.get("is_fraud") and lab["transaction_id"] in ids}
    return {
        "range": {
            "from_ms": data.start_ms,
            "to_ms": data.end_ms,
            "first_event_time": int(et.min()) if len(et) else None,
            "last_event_time": int(et.max()) if len(et) else None,
            "lookback_days": data.lookback_days,
            "warm_up_transactions": len(data.history),
        },
        "features": {
            "feature_set_version": FEATURE_SET_VERSION,
            "scored_on_live_features": int(use.sum()),
            "scored_on_rebuilt_features": int((~use).sum()),
            "live_features_published": int(have.sum()),
            "rebuilt_equals_live": float(rows_same[have].mean()) if have.any() else None,
            "rebuilt_differs_by_feature": differing,
        },
        "labels": {
            "labels_read": len(data.labels),
            "window_transactions_labelled": len(labelled),
            "window_frauds_labelled": len(fraud_labelled),
            "latest_label_time": latest,
            "label_delay_days": bundle.delay_days,
            "mature_share": mature,
        },
        "thresholds": {"candidate": bundle.thresholds.to_dict(), "deployed": deployed.to_dict() if deployed else None},
    }


def warnings(m: dict[str, Any]) -> list[str]:
    """What makes this backtest's numbers unreliable, in words."""
    out: list[str] = []
    f, lab, rng = m["features"], m["labels"], m["range"]
    n = m["window"]["transactions"]
    if f["scored_on_rebuilt_features"] and not rng["warm_up_transactions"]:
        out.append(
            f"{f['scored_on_rebuilt_features']:,} rows scored on features rebuilt without any warm-up: "
            "their history starts empty at the window's start (raise --lookback-days)"
        )
    eq = f["rebuilt_equals_live"]
    if eq is not None and eq < 1.0:
        top = ", ".join(list(f["rebuilt_differs_by_feature"])[:4])
        out.append(
            f"the topic's look-back reproduces live's features for only {eq:.1%} of the decisions that published them "
            f"(most often {top}): live had state the topic does not hold (a warm-up, a backfill, older events)"
            + ("; those rows were scored on live's features" if f["scored_on_live_features"] else "")
        )
    if n and lab["mature_share"] < MATURE_ENOUGH:
        out.append(
            f"labels are mature for only {lab['mature_share']:.1%} of the window (a {lab['label_delay_days']}-day "
            "label delay past the latest label read): frauds are undercounted and detection metrics are low"
        )
    if n and not lab["window_frauds_labelled"]:
        out.append("no fraud label for any transaction of the window: detection metrics are undefined")
    live = m.get("live")
    if live is not None:
        if live["missing"]:
            out.append(f"{live['missing']:,} window transactions have no published decision in the range")
        if live["degraded"]:
            out.append(
                f"{live['degraded']:,} live decisions were taken degraded ({', '.join(DEGRADED_ROUTES)}): "
                "a model replay cannot reproduce them; same_decision_normal leaves them out"
            )
    elif n:
        out.append("no published decision found for the window: nothing to compare with live")
    return out
