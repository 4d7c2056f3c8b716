"""Stage 1: decode, features from Redis, XGBoost over the batch, route.

Clear cases become decisions at once; the ambiguous band goes to the buffer
topic as ScoredTransaction for the deep worker; unreadable records go to the DLQ.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from confluent_kafka import Message

from models import xgb as xgbm
from models.features import FEATURE_NAMES, FEATURE_SET_VERSION
from stream.codec import Codec, Decoded
from stream.config import Topics
from stream.dlq import Record, dlq_record
from stream.featurestore import RedisFeatureStore
from stream.policy import (
    AMBIGUOUS,
    OUTCOME_NAMES,
    ROUTE_NAMES,
    Arm,
    Route,
    assign_arms,
    route,
    stage1_outcomes,
    thresholds_by_row,
    top_reasons,
)
from stream.registry import ModelRegistry


def now_ms() -> int:
    return int(time.time() * 1000)


class Scorer:
    """The per-batch work of stage 1; the Kafka loop lives in `stream.stage`."""

    def __init__(self, codec: Codec, store: RedisFeatureStore, models: ModelRegistry, topics: Topics) -> None:
        self.codec = codec
        self.store = store
        self.models = models
        self.topics = topics

    def process(self, messages: Sequence[Message]) -> list[Record]:
        """Outputs of one batch: decisions, buffer records and DLQ records."""
        self.models.refresh()
        batch = self.codec.decode_messages("Transaction", messages)
        out: list[Record] = [dlq_record(self.topics.dlq, f, "scorer") for f in batch.errs]
        if batch.oks:
            out.extend(self.score(batch.oks))
        return out

    def score(self, decoded: Sequence[Decoded]) -> list[Record]:
        """Score decoded transactions; outputs in input order."""
        bundle = self.models.current()
        events = [d.value for d in decoded]
        x = self.store.features(events)
        margin = xgbm.margins(bundle.booster, x)
        p = xgbm.sigmoid(margin)
        arms = [Arm("A", 1.0, bundle.version)]
        arm_idx = assign_arms([e["customer_id"] for e in events], arms)
        th = [bundle.thresholds]
        routes = route(p, thresholds_by_row(arm_idx, th, "approve_below"), thresholds_by_row(arm_idx, th, "block_above"))
        outcomes = stage1_outcomes(routes)
        blocked = np.flatnonzero(routes == Route.XGB_BLOCK)
        reasons: dict[int, list[tuple[str, float, float]]] = {}
        if blocked.size:
            contrib = xgbm.contributions(bundle.booster, x[blocked])[:, :-1]
            reasons = dict(zip(blocked.tolist(), top_reasons(contrib, x[blocked], FEATURE_NAMES), strict=True))
        ambiguous = np.flatnonzero(routes == AMBIGUOUS)
        leaves = xgbm.leaves(bundle.booster, x[ambiguous])
        leaf_row = {int(i): j for j, i in enumerate(ambiguous)}
        decided = now_ms()
        out: list[Record] = []
        for i, (ev, d) in enumerate(zip(events, decoded, strict=True)):
            arm = arms[int(arm_idx[i])].name
            if routes[i] == AMBIGUOUS:
                scored = {
                    "transaction": ev,
                    "features": x[i].tolist(),
                    "feature_set_version": FEATURE_SET_VERSION,
                    "xgb_score": float(p[i]),
                    "xgb_margin": float(margin[i]),
                    "leaf_indices": leaves[leaf_row[i]].tolist(),
                    "model_version": bundle.version,
                    "arm": arm,
                    "ingest_time": d.source.timestamp_ms,
                    "scored_at": decided,
                    "source_partition": d.source.partition,
                    "source_offset": d.source.offset,
                }
                out.append(
                    (
                        self.topics.ambiguous,
                        ev["customer_id"].encode(),
                        self.codec.encode("ScoredTransaction", scored),
                        [],
                    )
                )
                continue
            decision = decision_record(
                ev, OUTCOME_NAMES[outcomes[i]], float(p[i]), float(p[i]), None, ROUTE_NAMES[routes[i]],
                reasons.get(i, []), "xgb", bundle.version, arm, d.source.timestamp_ms, decided,
            )  # fmt: skip
            out.append((self.topics.decisions, ev["transaction_id"].encode(), self.codec.encode("Decision", decision), []))
        return out


def decision_record(
    tx: dict[str, Any],
    outcome: str,
    score: float,
    xgb_score: float | None,
    deep_score: float | None,
    route_name: str,
    reasons: list[tuple[str, float, float]],
    source: str,
    model_version: str,
    arm: str,
    ingest_ms: int,
    decided_ms: int,
) -> dict[str, Any]:
    """A Decision record (schemas/decision.avsc)."""
    return {
        "transaction_id": tx["transaction_id"],
        "customer_id": tx["customer_id"],
        "decision": outcome,
        "score": score,
        "xgb_score": xgb_score,
        "deep_score": deep_score,
        "route": route_name,
        "reasons": [
            {"feature": f, "value": v if np.isfinite(v) else None, "contribution": c, "source": source} for f, v, c in reasons[:4]
        ],
        "model_version": model_version,
        "arm": arm,
        "event_time": int(tx["event_time"]),
        "decided_at": decided_ms,
        "latency_ms": float(max(decided_ms - ingest_ms, 0)),
    }
