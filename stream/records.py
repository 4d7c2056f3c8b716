"""The typed records at every seam of the pipeline, and their Avro mapping.

    Transaction   the input event (schemas/transaction.avsc), as the codec decodes it
    Source        where a consumed record came from (provenance)
    Failure       a record that cannot be used: its bytes, its error *class*, the reason
    Reason        one feature behind a decision
    Decision      exactly one per transaction (schemas/decision.avsc)
    BufferRecord  an ambiguous transaction on its way to the deep stage (scored_transaction.avsc)
    Output        what a stage produces: topic, key, value, headers
    BatchResult   a stage's answer for one micro-batch: outputs plus what the loop records

Records are frozen; `as_avro()` / `from_avro()` are the only translation to and from the
dicts fastavro reads and writes (`stream.kafka.codec` does the bytes). A Failure becomes a
dead letter in `stream.deadletter`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypedDict

from models.decision import Level, Outcome, Route
from models.featureset import FEATURE_SET_VERSION, N_FEATURES
from models.sequence import SEQ_WIDTH, SEQUENCE_VERSION
from stream.errors import PoisonError


class Transaction(TypedDict):
    transaction_id: str
    event_time: int  # epoch ms
    customer_id: str
    terminal_id: str
    amount: int  # minor units
    currency: str
    channel: str
    mcc: int
    device_id: str | None
    ip: str | None
    latitude: float | None
    longitude: float | None
    country: str | None


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record came from; provenance for the DLQ and latency tracing."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # the record's append/create time
    key: bytes | None


@dataclass(frozen=True, slots=True)
class Failure:
    """A record that could not be used, with everything needed to dead-letter it."""

    raw: bytes | None
    error: type[PoisonError]
    reason: str
    source: Source


class Output(NamedTuple):
    """One record a stage produces in its batch's transaction."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Reason:
    feature: str
    value: float | None
    contribution: float
    source: str  # xgb | deep | rules


@dataclass(frozen=True, slots=True)
class Decision:
    transaction_id: str
    customer_id: str
    outcome: Outcome
    score: float  # the score the decision was taken on
    xgb_score: float | None
    deep_score: float | None
    route: Route
    reasons: tuple[Reason, ...]
    model_version: str
    arm: str
    event_time: int
    decided_at: int
    latency_ms: float  # decided_at minus the input record's append time
    features: tuple[float, ...] = ()  # what the scores were computed from; () when no state was read
    feature_set_version: str = ""
    sequence: tuple[float, ...] = ()  # the card sequence the scorer read, on every route (audits rescore with it)
    sequence_version: str = ""

    def carries_state(self) -> bool:
        """Whether it carries the features and card sequence of this build's sets: what an audit can rescore."""
        return (self.feature_set_version, len(self.features), self.sequence_version, len(self.sequence)) == (
            FEATURE_SET_VERSION, N_FEATURES, SEQUENCE_VERSION, SEQ_WIDTH)  # fmt: skip

    @classmethod
    def of(
        cls,
        tx: Transaction,
        outcome: Outcome,
        route: Route,
        score: float,
        *,
        reasons: Sequence[tuple[str, float, float]],
        source: str,
        model_version: str,
        arm: str,
        ingest_ms: int,
        decided_ms: int,
        xgb_score: float | None = None,
        deep_score: float | None = None,
        features: Sequence[float] = (),
        feature_set_version: str = "",
        sequence: Sequence[float] = (),
        sequence_version: str = "",
    ) -> Decision:
        """The decision on `tx`; at most four reasons (name, value, contribution) from `source`.
        `features` (of `feature_set_version`) and `sequence` are what the scores were computed
        from: carried so that an audit recomputes exactly what was decided."""
        return cls(
            transaction_id=tx["transaction_id"],
            customer_id=tx["customer_id"],
            outcome=outcome,
            score=score,
            xgb_score=xgb_score,
            deep_score=deep_score,
            route=route,
            reasons=tuple(Reason(f, v if math.isfinite(v) else None, c, source) for f, v, c in reasons[:4]),
            model_version=model_version,
            arm=arm,
            event_time=int(tx["event_time"]),
            decided_at=decided_ms,
            latency_ms=float(max(decided_ms - ingest_ms, 0)),
            features=tuple(features),
            feature_set_version=feature_set_version if features else "",
            sequence=tuple(sequence),
            sequence_version=sequence_version if sequence else "",
        )

    def as_avro(self) -> dict[str, object]:
        return {
            "transaction_id": self.transaction_id,
            "customer_id": self.customer_id,
            "decision": self.outcome.name,
            "score": self.score,
            "xgb_score": self.xgb_score,
            "deep_score": self.deep_score,
            "route": self.route.name,
            "reasons": [
                {"feature": r.feature, "value": r.value, "contribution": r.contribution, "source": r.source} for r in self.reasons
            ],
            "model_version": self.model_version,
            "arm": self.arm,
            "event_time": self.event_time,
            "decided_at": self.decided_at,
            "latency_ms": self.latency_ms,
            "features": list(self.features),
            "feature_set_version": self.feature_set_version,
            "sequence": list(self.sequence),
            "sequence_version": self.sequence_version,
        }

    @classmethod
    def from_avro(cls, v: Mapping[str, Any]) -> Decision:
        return cls(
            transaction_id=v["transaction_id"],
            customer_id=v["customer_id"],
            outcome=Outcome[v["decision"]],
            score=float(v["score"]),
            xgb_score=v["xgb_score"],
            deep_score=v["deep_score"],
            route=Route[v["route"]],
            reasons=tuple(Reason(r["feature"], r["value"], r["contribution"], r["source"]) for r in v["reasons"]),
            model_version=v["model_version"],
            arm=v["arm"],
            event_time=int(v["event_time"]),
            decided_at=int(v["decided_at"]),
            latency_ms=float(v["latency_ms"]),
            features=tuple(v["features"]),
            feature_set_version=v["feature_set_version"],
            sequence=tuple(v["sequence"]),
            sequence_version=v["sequence_version"],
        )


@dataclass(frozen=True, slots=True)
class BufferRecord:
    transaction: Transaction
    features: tuple[float, ...]
    feature_set_version: str
    xgb_score: float
    xgb_margin: float
    leaf_indices: tuple[int, ...]
    model_version: str
    arm: str
    ingest_time: int  # when the input record was appended to the source topic
    scored_at: int
    source_partition: int
    source_offset: int
    sequence: tuple[float, ...] = ()  # the card's recent sequence, flattened (models.sequence)
    sequence_version: str = ""

    def as_avro(self) -> dict[str, object]:
        v: dict[str, object] = {f: getattr(self, f) for f in self.__dataclass_fields__}
        for f in ("features", "leaf_indices", "sequence"):
            v[f] = list(v[f])  # type: ignore[call-overload]
        return v

    @classmethod
    def from_avro(cls, v: Mapping[str, Any]) -> BufferRecord:
        fields = {f: v[f] for f in cls.__dataclass_fields__}
        for f in ("features", "leaf_indices", "sequence"):
            fields[f] = tuple(fields[f])
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class Decided:
    """What the metrics count of one decision."""

    route: str
    outcome: str
    latency_ms: float


@dataclass(frozen=True, slots=True)
class BatchResult:
    """A stage's outputs for one batch, and what the loop records from it: the decisions
    made, the degradation level (stage 1), the seconds of each step that ran (a step skipped
    — Redis down, XGBoost open — is absent, never repeated), the model version in use."""

    outputs: list[Output]
    decided: tuple[Decided, ...] = ()
    level: Level | None = None
    step_seconds: Mapping[str, float] = field(default_factory=dict)
    model_version: str | None = None
