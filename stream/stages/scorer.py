"""Stage 1: decode, features from Redis, XGBoost over the batch, route.

A batch goes through these steps, in this order, and comes back as a BatchResult:

    admit     decode and check every record; unreadable ones become dead letters
    features  one feature-store read for the batch (None while Redis is down), its state
              write sent at once; an id already decided from another record: a dead letter
    per arm   the arm's model version; XGBoost over its rows; `models.decision.stage_one`
              decides the clear cases, the band goes to the buffer topic for the deep
              stage (or, with the deep stage down, is decided here: XGB_FALLBACK)
    rules     where XGBoost cannot score (no model, failing, over its deadline): the
              rules (RULES), and where they cannot decide, the safe default (SAFE_DEFAULT)
    write     the state write acknowledged; when it failed, the batch is decided again
              as without features (rules, safe default)

Nothing here touches Kafka: the loop (`stream.kafka.loop`) produces the outputs in the
batch's transaction and records the metrics from the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import structlog
from confluent_kafka import Message

from models import xgb as xgbm
from models.artifacts import ModelBundle
from models.decision import AMBIGUOUS, Arm, Level, Outcome, Route, assign_arms, route, stage_one, top_reasons
from models.features import BatchFeatures
from models.featureset import FEATURE_NAMES, FEATURE_SET_VERSION, N_FEATURES
from models.rules import evaluate as evaluate_rules
from models.sequence import SEQUENCE_VERSION
from stream.config import FallbackSettings, ScorerSettings, Topics
from stream.deadletter import dead_letter
from stream.errors import ArtifactError, DuplicateTransaction, FeatureStoreError
from stream.kafka.codec import Codec, Decoded
from stream.kafka.columns import BufferColumns, DecisionColumns
from stream.records import BatchResult, Decided, Decision, Failure, Output, Transaction
from stream.stages.admission import admit, source_ids
from stream.stages.guards import FeatureReader, GuardedFeatures, GuardedXGBoost, Scored, now_ms
from stream.state.versions import Versions

log = structlog.get_logger("fraudstream.scorer")
_ROUTES, _OUTCOMES = {int(r): r.name for r in Route}, {int(o): o.name for o in Outcome}


@dataclass
class _Batch:
    """One batch on its way through the steps: what is known so far and what it produced."""

    decoded: list[Decoded]
    events: list[Transaction]
    decided_at: int
    by_row: dict[int, Output] = field(default_factory=dict)
    decided: list[Decided] = field(default_factory=list)
    levels: list[Level] = field(default_factory=lambda: [Level.NORMAL])
    xgb_s: float = 0.0
    seq: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # card sequences, flattened


class Scorer:
    """The per-batch work of stage 1."""

    def __init__(
        self,
        codec: Codec,
        store: FeatureReader,
        models: Versions,
        topics: Topics,
        settings: ScorerSettings,
        fallback: FallbackSettings,
        deep_available: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        arms: Sequence[Arm] = (),
    ) -> None:
        self.codec, self.store, self.models, self.topics = codec, store, models, topics
        self.settings, self.fallback, self.deep_available = settings, fallback, deep_available
        self.arms: list[Arm] = list(arms) or [Arm("A", 1.0, None)]  # none configured: one following the promoted version
        self.features = GuardedFeatures(store, fallback, clock)
        self.xgboost = GuardedXGBoost(fallback, clock, settings.threads)

    def process(self, messages: Sequence[Message]) -> BatchResult:
        """Outputs of one batch (dead letters first, then per input record in order) and its figures."""
        oks, failures = self.admit(messages)
        outputs = [dead_letter(self.topics.dlq, f, "scorer") for f in failures]
        steps: dict[str, float] = {}
        level: Level | None = None
        decided: tuple[Decided, ...] = ()
        if oks:
            batch = _Batch(oks, [cast(Transaction, d.value) for d in oks], now_ms())
            outputs += self.score(batch, steps)
            level, decided = max(batch.levels), tuple(batch.decided)
        usable = self.models.usable
        return BatchResult(outputs, decided, level, steps, usable.version if usable is not None else None)

    def admit(self, messages: Sequence[Message]) -> tuple[list[Decoded], list[Failure]]:
        """Decoded transactions that pass the checks against their own metadata, and the rest."""
        return admit(self.codec, messages, self.settings)

    def warm_up(self) -> None:
        """Pay one-off costs before consuming: compilations, XGBoost's first predictions, the Redis scripts."""
        self.codec.warm_up()
        bundle = self.models.usable
        if bundle is None:
            log.warning("warm_up_without_model", reason=self.models.broken)
        else:
            x = np.zeros((self.settings.batch.max_rows, N_FEATURES), dtype=np.float32)
            xgbm.margins(bundle.booster, x[:1])
            xgbm.margins(bundle.booster, x)
            xgbm.leaves(bundle.booster, x)
            xgbm.contributions(bundle.booster, x[:8])
        try:
            self.store.warm_up()
        except FeatureStoreError as exc:
            log.warning("warm_up_without_redis", error=str(exc))

    def score(self, b: _Batch, steps: dict[str, float]) -> list[Output]:
        """Features for the batch, then each arm's rows by its model (or the rules); outputs in input
        order. Redis applies the state write while the arms run; when it failed, the features
        are unusable and the batch is decided again without them (the fallback chain)."""
        read = self.features.read(b.events, source_ids(b.decoded))
        if read.value is None:
            steps.update({"features": read.seconds} if read.seconds is not None else {})
            return self._arms(b, None, steps)
        try:
            out = self._arms(b, read.value.features, steps)
        finally:
            written = self.features.acknowledge(read.value)
        steps["features"] = (read.seconds or 0.0) + (written.seconds or 0.0)
        if written.value is None:
            b.by_row, b.decided, b.levels = {}, [], [Level.NORMAL]
            return self._arms(b, None, steps)
        return out

    def _arms(self, b: _Batch, features: BatchFeatures | None, steps: dict[str, float]) -> list[Output]:
        """Each arm's rows by its model, or the rules without features; repeats dead-lettered."""
        events = b.events
        x = features.features if features is not None else None
        if features is not None:
            b.seq = features.sequences.reshape(len(events), -1)
        repeats = features.repeats if features is not None else np.zeros(len(events), dtype=bool)
        out = [self._repeat(b.decoded[i]) for i in np.flatnonzero(repeats).tolist()]
        arm_idx = assign_arms([e["customer_id"] for e in b.events], self.arms)
        for a, arm in enumerate(self.arms):
            rows = np.flatnonzero((arm_idx == a) & ~repeats)
            if rows.size == 0:
                continue
            bundle = self._model(arm)
            scored = None
            if bundle is not None and x is not None:
                timed = self.xgboost.score(bundle, x[rows])
                scored, b.xgb_s = timed.value, b.xgb_s + (timed.seconds or 0.0)
                if timed.seconds is not None:
                    steps["xgboost"] = b.xgb_s
            if scored is None or bundle is None or x is None:
                b.levels.append(self._rules(b, x, rows, arm))
            else:
                b.levels.append(self._decide(b, arm, bundle, rows, x[rows], scored))
        return out + [b.by_row[i] for i in sorted(b.by_row)]

    def _repeat(self, d: Decoded) -> Output:
        reason = f"transaction id {d.value['transaction_id']} was already decided from another record"
        return dead_letter(self.topics.dlq, Failure(d.raw, DuplicateTransaction, reason, d.source), "scorer")

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

    def _emit(self, b: _Batch, row: int, decision: Decision) -> None:
        b.decided.append(Decided(decision.route.name, decision.outcome.name, decision.latency_ms))
        b.by_row[row] = Output(self.topics.decisions, decision.transaction_id.encode(), self.codec.encode_decision(decision), [])

    def _emit_columns(self, b: _Batch, at: list[int], columns: DecisionColumns) -> None:
        """The rows `at` decided in `columns`, written in one pass (`stream.kafka.columns`)."""
        values = self.codec.encode_decisions(columns)
        latencies = columns.latencies().tolist()
        for k, i in enumerate(at):
            route_name, outcome_name = _ROUTES[int(columns.routes[k])], _OUTCOMES[int(columns.outcomes[k])]
            b.decided.append(Decided(route_name, outcome_name, latencies[k]))
            b.by_row[i] = Output(self.topics.decisions, b.events[i]["transaction_id"].encode(), values[k], [])

    def _decide(self, b: _Batch, arm: Arm, bundle: ModelBundle, rows: np.ndarray, x: np.ndarray, scored: Scored) -> Level:
        """Route one arm's rows with its thresholds: clear cases decided here, the band to the buffer."""
        p, th = scored.p, bundle.thresholds
        # The deep stage is asked only when the band is not empty.
        deep_ok = not (route(p, th.approve_below, th.block_above) == AMBIGUOUS).any() or self.deep_available()
        routes, outcome = stage_one(p, th, deep_available=deep_ok)
        flagged = np.flatnonzero(outcome != Outcome.APPROVE)
        reasons: dict[int, list[tuple[str, float, float]]] = {}
        if flagged.size:
            contrib = xgbm.contributions(bundle.booster, x[flagged])[:, :-1]
            reasons = dict(zip(flagged.tolist(), top_reasons(contrib, x[flagged], FEATURE_NAMES), strict=True))
        ingest = np.array([b.decoded[i].source.timestamp_ms for i in rows.tolist()], dtype=np.int64)
        band = np.flatnonzero(routes == AMBIGUOUS)
        if band.size:
            leaves = scored.leaves[band] if scored.leaves is not None else xgbm.leaves(bundle.booster, x[band])
            at = rows[band].tolist()
            buffered = BufferColumns(
                [b.events[i] for i in at], x[band], FEATURE_SET_VERSION, p[band], scored.margin[band], leaves, bundle.version,
                arm.name, ingest[band], b.decided_at,
                np.array([b.decoded[i].source.partition for i in at]), np.array([b.decoded[i].source.offset for i in at]),
                b.seq[rows[band]], SEQUENCE_VERSION,
            )  # fmt: skip
            for i, value in zip(at, self.codec.encode_buffers(buffered), strict=True):
                b.by_row[i] = Output(self.topics.ambiguous, b.events[i]["customer_id"].encode(), value, [])
        clear = np.flatnonzero(routes != AMBIGUOUS)
        if clear.size:
            at = rows[clear].tolist()
            columns = DecisionColumns(
                [b.events[i] for i in at], outcome[clear], routes[clear], p[clear], [reasons.get(j, []) for j in clear.tolist()],
                "xgb", bundle.version, arm.name, ingest[clear], b.decided_at, x[clear], FEATURE_SET_VERSION,
                b.seq[rows[clear]], SEQUENCE_VERSION,
            )  # fmt: skip
            self._emit_columns(b, at, columns)
        return Level.NORMAL if deep_ok else Level.XGB_FALLBACK

    def _rules(self, b: _Batch, x: np.ndarray | None, rows: np.ndarray, arm: Arm) -> Level:
        """Decisions when XGBoost cannot score: rules, else the safe default — never an APPROVE by omission."""
        picked = [b.events[i] for i in rows]
        no_match = Outcome[self.fallback.rules_no_match]
        outcomes, names = evaluate_rules(self.fallback.rules, picked, None if x is None else x[rows], no_match)
        safe = Outcome[self.fallback.safe_default]
        usable = self.models.usable
        version = arm.model_version or (usable.version if usable is not None else self.models.requested)
        xs = x[rows].tolist() if x is not None else [[] for _ in range(rows.size)]
        for j, i in enumerate(rows.tolist()):
            tx, d = b.events[i], b.decoded[i]
            if outcomes[j] < 0:
                o, r, why = safe, Route.SAFE_DEFAULT, "safe_default"
            else:
                o, r, why = Outcome(int(outcomes[j])), Route.RULES, names[j] or "no_rule_matched"
            decision = Decision.of(
                tx, o, r, 1.0 if o != Outcome.APPROVE else 0.0, reasons=[(why, float(tx["amount"]) / 100, 1.0)],
                source="rules", model_version=version, arm=arm.name, ingest_ms=d.source.timestamp_ms,
                decided_ms=b.decided_at, features=xs[j], feature_set_version=FEATURE_SET_VERSION,
            )  # fmt: skip
            self._emit(b, i, decision)
        return Level.SAFE_DEFAULT if (outcomes < 0).any() else Level.RULES
