"""Stage 1: decode, features from Redis, XGBoost over the batch, route.

Clear cases become decisions at once; the ambiguous band goes to the buffer
topic as ScoredTransaction for the deep worker; unreadable records go to the DLQ.

Degradation, decided per batch and recorded in each decision's `route`:
  deep stage down (no heartbeat / lag over budget) → the band is decided here (XGB_FALLBACK);
  XGBoost failing, over its deadline or no loadable model → rules (RULES);
  rules cannot decide (they need features and Redis is down) → safe default (SAFE_DEFAULT).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import structlog
from confluent_kafka import Message
from xgboost.core import XGBoostError

from models import xgb as xgbm
from models.artifacts import ModelBundle
from models.features import FEATURE_NAMES, FEATURE_SET_VERSION, SOURCE_KEY, stable_hashes
from stream.breaker import CircuitBreaker
from stream.codec import Codec, Decoded, Failure
from stream.config import FallbackSettings, ScorerSettings, Topics
from stream.dlq import Record, dlq_record
from stream.errors import ArtifactError, FeatureStoreError
from stream.featurestore import RedisFeatureStore
from stream.metrics import Metrics
from stream.policy import AMBIGUOUS, OUTCOME_NAMES, ROUTE_NAMES, Arm, Outcome, Route, assign_arms, route, top_reasons
from stream.registry import ModelRegistry
from stream.rules import evaluate as evaluate_rules

log = structlog.get_logger("fraudstream.scorer")


class Level(IntEnum):
    """How degraded the last batch was; exported as the fallback-level metric."""

    NORMAL = 0
    XGB_FALLBACK = 1
    RULES = 2
    SAFE_DEFAULT = 3


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Scored:
    """XGBoost's view of a batch: margins, probabilities, leaves when they came for free."""

    margin: np.ndarray
    p: np.ndarray
    leaves: np.ndarray | None


@dataclass
class ScorerStats:
    level: Level = Level.NORMAL
    features_ms: float = 0.0
    model_ms: float = 0.0


class Scorer:
    """The per-batch work of stage 1; the Kafka loop lives in `stream.stage`."""

    def __init__(
        self,
        codec: Codec,
        store: RedisFeatureStore,
        models: ModelRegistry,
        topics: Topics,
        settings: ScorerSettings,
        fallback: FallbackSettings,
        deep_available: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        arms: Sequence[Arm] = (),
    ) -> None:
        self.codec = codec
        # No arms configured: one arm that follows the promoted version.
        self.arms: list[Arm] = list(arms) or [Arm("A", 1.0, None)]
        self.store = store
        self.models = models
        self.topics = topics
        self.settings = settings
        self.fallback = fallback
        self.deep_available = deep_available
        self.clock = clock
        self.redis_breaker = CircuitBreaker("redis", fallback.breaker_failures, fallback.breaker_reset_s, clock)
        self.xgb_breaker = CircuitBreaker("xgboost", fallback.breaker_failures, fallback.breaker_reset_s, clock)
        self.stats = ScorerStats()
        self.metrics = metrics
        self.decided: list[tuple[str, str, float]] = []

    def process(self, messages: Sequence[Message]) -> list[Record]:
        """Outputs of one batch: decisions, buffer records and DLQ records."""
        batch = self.codec.decode_messages("Transaction", messages)
        raws = {(m.partition(), m.offset()): m.value() for m in messages}
        errs = list(batch.errs)
        oks = []
        for d in batch.oks:
            problem = self.check(d, raws.get((d.source.partition, d.source.offset)))
            if problem is None:
                oks.append(d)
            else:
                errs.append(problem)
        out: list[Record] = [dlq_record(self.topics.dlq, f, "scorer") for f in errs]
        self.decided = []
        if oks:
            out.extend(self.score(oks, raws))
        if self.metrics is not None:
            self.metrics.count_decisions(self.decided)
            self.metrics.fallback_level.set(int(self.stats.level))
            self.metrics.step_seconds.labels("features").observe(self.stats.features_ms / 1000)
            self.metrics.step_seconds.labels("xgboost").observe(self.stats.model_ms / 1000)
            usable = self.models.usable
            if usable is not None:
                self.metrics.set_model(usable.version)
        return out

    def check(self, d: Decoded, raw: bytes | None) -> Failure | None:
        """Checks against the record's own metadata: size and event-time plausibility."""
        size = len(raw or b"")
        if size > self.settings.max_record_bytes:
            return Failure(raw, "ValidationError", f"record of {size} bytes exceeds {self.settings.max_record_bytes}", d.source)
        skew_ms = d.value["event_time"] - d.source.timestamp_ms
        if skew_ms > self.settings.max_future_skew_s * 1000:
            return Failure(raw, "ValidationError", f"event_time is {skew_ms / 1000:.0f} s after the record timestamp", d.source)
        max_age = self.settings.max_event_age_days
        if max_age and -skew_ms > max_age * 86_400_000:
            return Failure(raw, "ValidationError", f"event_time is more than {max_age} days old", d.source)
        return None

    def warm_up(self) -> None:
        """Pay one-off costs before consuming: XGBoost's first predictions, the Redis script load."""
        bundle = self.models.usable
        if bundle is None:
            log.warning("warm_up_without_model", reason=self.models.broken)
            return self._warm_store()
        x = np.zeros((self.settings.batch.max_rows, len(FEATURE_NAMES)), dtype=np.float32)
        xgbm.margins(bundle.booster, x[:1])
        xgbm.margins(bundle.booster, x)
        xgbm.leaves(bundle.booster, x)
        xgbm.contributions(bundle.booster, x[:8])
        self._warm_store()

    def _warm_store(self) -> None:
        try:
            self.store.warm_up()
        except FeatureStoreError as exc:
            log.warning("warm_up_without_redis", error=str(exc))

    def emit(self, decision: dict[str, Any]) -> Record:
        """A Decision as an output record; counted for the metrics."""
        self.decided.append((decision["route"], decision["decision"], decision["latency_ms"]))
        return (self.topics.decisions, decision["transaction_id"].encode(), self.codec.encode("Decision", decision), [])

    def _model(self, arm: Arm) -> ModelBundle | None:
        """The arm's pinned version, or the promoted one; None when it cannot be loaded."""
        try:
            if arm.model_version is not None:
                return self.models.get(arm.model_version)
            self.models.refresh()
            return self.models.current()
        except ArtifactError as exc:
            log.error("model_unusable", arm=arm.name, error=str(exc))
            return None

    def _features(self, events: list[dict[str, Any]]) -> tuple[np.ndarray | None, np.ndarray]:
        """(features or None when Redis is down, repeat flags)."""
        no_repeats = np.zeros(len(events), dtype=bool)
        if not self.redis_breaker.allow():
            return None, no_repeats
        t = self.clock()
        try:
            result = self.store.features(events)
        except FeatureStoreError as exc:
            self.redis_breaker.failure()
            log.warning("features_unavailable", error=str(exc), breaker=self.redis_breaker.state.value)
            return None, no_repeats
        self.redis_breaker.success()
        self.stats.features_ms = (self.clock() - t) * 1000
        return result.features, result.repeats

    def _xgboost(self, bundle: ModelBundle | None, x: np.ndarray | None) -> Scored | None:
        """Margins, probabilities and (small batches) leaves, or None when XGBoost cannot be used."""
        if bundle is None or x is None or not self.xgb_breaker.allow():
            return None
        t = self.clock()
        leaves = None
        try:
            if bundle.forest is not None and len(x) <= xgbm.FOREST_MAX_ROWS:
                margin, leaves = bundle.forest.predict(x)
            else:
                margin = xgbm.margins(bundle.booster, x)
        except (ValueError, RuntimeError, XGBoostError) as exc:
            self.xgb_breaker.failure()
            log.error("xgboost_failed", error=str(exc), breaker=self.xgb_breaker.state.value)
            return None
        elapsed_ms = (self.clock() - t) * 1000
        self.stats.model_ms = elapsed_ms
        if elapsed_ms > self.fallback.xgb_deadline_ms:
            self.xgb_breaker.failure()  # this batch's scores stand; repeated slowness opens the breaker
            log.warning("xgboost_over_deadline", ms=round(elapsed_ms, 1), breaker=self.xgb_breaker.state.value)
        else:
            self.xgb_breaker.success()
        return Scored(margin, xgbm.sigmoid(margin), leaves)

    def score(self, decoded: Sequence[Decoded], raws: dict[tuple[int | None, int | None], bytes | None]) -> list[Record]:
        """Score decoded transactions: per A/B arm, its model version and thresholds; outputs in input order."""
        events = [{**d.value, SOURCE_KEY: src} for d, src in zip(decoded, source_ids(decoded), strict=True)]
        x, repeats = self._features(events)
        decided_at = now_ms()
        out: list[Record] = []
        for i in np.flatnonzero(repeats).tolist():
            d = decoded[i]
            reason = f"transaction id {d.value['transaction_id']} was already decided from another record"
            out.append(dlq_record(self.topics.dlq, Failure(raws.get((d.source.partition, d.source.offset)),
                                                           "DuplicateTransaction", reason, d.source), "scorer"))  # fmt: skip
        by_row: dict[int, Record] = {}
        arm_idx = assign_arms([e["customer_id"] for e in events], self.arms)
        levels = [Level.NORMAL]
        for a, arm in enumerate(self.arms):
            rows = np.flatnonzero((arm_idx == a) & ~repeats)
            if rows.size == 0:
                continue
            bundle = self._model(arm)
            scored = self._xgboost(bundle, x[rows]) if x is not None and bundle is not None else None
            if scored is None or bundle is None or x is None:
                levels.append(self._rules(events, decoded, x, rows, arm, decided_at, by_row))
            else:
                levels.append(self._decide(arm, bundle, rows, x, scored, decoded, decided_at, by_row))
        self.stats.level = max(levels)
        out.extend(by_row[i] for i in sorted(by_row))
        return out

    def _decide(
        self,
        arm: Arm,
        bundle: ModelBundle,
        rows: np.ndarray,
        x_all: np.ndarray,
        scored: Scored,
        decoded: Sequence[Decoded],
        decided_at: int,
        by_row: dict[int, Record],
    ) -> Level:
        """Route one arm's rows with its thresholds: clear cases decided here, the band to the buffer."""
        margin, p = scored.margin, scored.p
        x = x_all[rows]
        th = bundle.thresholds
        routes = route(p, np.full(len(p), th.approve_below, np.float32), np.full(len(p), th.block_above, np.float32))
        band = routes == AMBIGUOUS
        deep_ok = bool(not band.any() or self.deep_available())
        outcome = np.where(routes == Route.XGB_BLOCK, Outcome.BLOCK, Outcome.APPROVE).astype(np.int8)
        if not deep_ok:
            routes[band] = Route.XGB_FALLBACK
            outcome[band & (p >= th.fallback_review_above)] = Outcome.REVIEW
        flagged = np.flatnonzero(outcome != Outcome.APPROVE)
        reasons: dict[int, list[tuple[str, float, float]]] = {}
        if flagged.size:
            contrib = xgbm.contributions(bundle.booster, x[flagged])[:, :-1]
            reasons = dict(zip(flagged.tolist(), top_reasons(contrib, x[flagged], FEATURE_NAMES), strict=True))
        ambiguous = np.flatnonzero(routes == AMBIGUOUS)
        leaves = scored.leaves[ambiguous] if scored.leaves is not None else xgbm.leaves(bundle.booster, x[ambiguous])
        leaf_row = {int(j): n for n, j in enumerate(ambiguous)}
        for j, i in enumerate(rows.tolist()):
            ev, d = decoded[i].value, decoded[i]
            if routes[j] == AMBIGUOUS:
                record = {
                    "transaction": ev, "features": x[j].tolist(), "feature_set_version": FEATURE_SET_VERSION,
                    "xgb_score": float(p[j]), "xgb_margin": float(margin[j]), "leaf_indices": leaves[leaf_row[j]].tolist(),
                    "model_version": bundle.version, "arm": arm.name, "ingest_time": d.source.timestamp_ms,
                    "scored_at": decided_at, "source_partition": d.source.partition, "source_offset": d.source.offset,
                }  # fmt: skip
                by_row[i] = (
                    self.topics.ambiguous,
                    ev["customer_id"].encode(),
                    self.codec.encode("ScoredTransaction", record),
                    [],
                )
                continue
            decision = decision_record(
                ev, OUTCOME_NAMES[outcome[j]], float(p[j]), float(p[j]), None, ROUTE_NAMES[routes[j]],
                reasons.get(j, []), "xgb", bundle.version, arm.name, d.source.timestamp_ms, decided_at,
            )  # fmt: skip
            by_row[i] = self.emit(decision)
        return Level.NORMAL if deep_ok else Level.XGB_FALLBACK

    def _rules(
        self,
        events: list[dict[str, Any]],
        decoded: Sequence[Decoded],
        x: np.ndarray | None,
        rows: np.ndarray,
        arm: Arm,
        decided_at: int,
        by_row: dict[int, Record],
    ) -> Level:
        """Decisions when XGBoost cannot score: rules, else the safe default — never an APPROVE by omission."""
        picked = [events[i] for i in rows]
        outcomes, names = evaluate_rules(self.fallback.rules, picked, None if x is None else x[rows],
                                         Outcome[self.fallback.rules_no_match])  # fmt: skip
        safe = Outcome[self.fallback.safe_default]
        usable = self.models.usable
        version = arm.model_version or (usable.version if usable is not None else self.models.requested)
        for j, i in enumerate(rows.tolist()):
            ev, d = events[i], decoded[i]
            if outcomes[j] < 0:
                o, r, why = safe, Route.SAFE_DEFAULT, "safe_default"
            else:
                o, r, why = Outcome(int(outcomes[j])), Route.RULES, names[j] or "no_rule_matched"
            reasons = [(why, float(ev["amount"]) / 100, 1.0)]
            rec = decision_record(ev, o.name, 1.0 if o != Outcome.APPROVE else 0.0, None, None, r.name, reasons, "rules",
                                  version, arm.name, d.source.timestamp_ms, decided_at)  # fmt: skip
            by_row[i] = self.emit(rec)
        return Level.SAFE_DEFAULT if (outcomes < 0).any() else Level.RULES


def source_ids(decoded: Sequence[Decoded]) -> list[int]:
    """Per record, a nonzero id of the delivery it came from (topic/partition/offset)."""
    ids = stable_hashes([f"{d.source.topic}/{d.source.partition}/{d.source.offset}" for d in decoded])
    ids[ids == 0] = 1
    result: list[int] = ids.tolist()
    return result


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
