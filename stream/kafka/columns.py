"""Stage 1's outputs for a batch's rows, kept as columns and written to Avro in one pass.

Stage 1 decides most of a batch from XGBoost at once and sends the band to the buffer topic;
a record object per row, an Avro dict per record and a writer call per dict would be most of
its work. `DecisionColumns` holds what `Decision.of` takes, per row, as the arrays the
scorer already has, `BufferColumns` what a BufferRecord holds; `write` gives each row's
body: the fields every row shares (versions, arm, the batch's time) encoded once, the
number columns (scores, latencies, features, sequences, leaf indices) converted for the
whole batch by numpy, then per row a join of its parts. `decisions()` and `records()` are
the same rows as records: the reference, which the unit tests hold `write` to, byte for
byte (`Codec.encode_decision` / `encode_buffer` of each).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

import schemas
from models.decision import Outcome, Route
from stream.kafka.writer import float_bytes, int_rows, string_bytes, varint, writer_for
from stream.records import BufferRecord, Decision, Transaction

_DECISION = {f["name"]: f["type"] for f in schemas.plain_schema("Decision")["fields"]}
_OUTCOME = {int(o): varint(_DECISION["decision"]["symbols"].index(o.name)) for o in Outcome}
_ROUTE = {int(r): varint(_DECISION["route"]["symbols"].index(r.name)) for r in Route}
_EMPTY, _PRESENT, _NULL = b"\x00", b"\x02", b"\x00"  # an empty array; a union's second branch; its null


def _float32(values: np.ndarray) -> np.ndarray:
    """float32 as `struct.pack('<f', float(v))` makes it (a Python int or float first: a double)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype("<f4")


def _float_rows(rows: np.ndarray, tail: bytes) -> list[bytes]:
    """Each row of an (n, k) matrix as an Avro array<float>, `tail` after each."""
    if rows.shape[1] == 0:
        return [_EMPTY + tail] * len(rows)
    head, width, raw = varint(rows.shape[1]), 4 * rows.shape[1], _float32(rows).tobytes()
    return [head + raw[k * width : (k + 1) * width] + _EMPTY + tail for k in range(len(rows))]


@dataclass(frozen=True, slots=True)
class DecisionColumns:
    """One arm's decided rows of a batch: row k of every column is one Decision."""

    transactions: Sequence[Transaction]
    outcomes: np.ndarray  # (n,) Outcome values
    routes: np.ndarray  # (n,) Route values
    scores: np.ndarray  # (n,) XGBoost's probability: the score and xgb_score
    reasons: Sequence[Sequence[tuple[str, float, float]]]  # per row (name, value, contribution), the first four kept
    source: str
    model_version: str
    arm: str
    ingest_ms: np.ndarray  # (n,) each input record's append time
    decided_ms: int
    features: np.ndarray  # (n, F) float32
    feature_set_version: str
    sequences: np.ndarray  # (n, S) float32, S = 0 when none was read
    sequence_version: str

    def decisions(self) -> Iterator[Decision]:
        """The rows as Decision records (what `write` encodes)."""
        for k, tx in enumerate(self.transactions):
            yield Decision.of(tx, Outcome(int(self.outcomes[k])), Route(int(self.routes[k])), float(self.scores[k]),
                              xgb_score=float(self.scores[k]), reasons=self.reasons[k], source=self.source,
                              model_version=self.model_version, arm=self.arm, ingest_ms=int(self.ingest_ms[k]),
                              decided_ms=self.decided_ms, features=self.features[k].tolist(),
                              feature_set_version=self.feature_set_version, sequence=self.sequences[k].tolist(),
                              sequence_version=self.sequence_version)  # fmt: skip

    def latencies(self) -> np.ndarray:
        """Each row's latency_ms: decided minus the input record's append time, at least 0."""
        return np.maximum(self.decided_ms - np.asarray(self.ingest_ms, dtype=np.int64), 0).astype(np.float64)

    def write(self) -> list[bytes]:
        """Each row's Decision body (unframed), as `Codec.encode_decision` writes the row's record."""
        n = len(self.transactions)
        scores = _float32(self.scores).tobytes()
        latencies = _float32(self.latencies()).tobytes()
        features = self._floats(self.features, self.feature_set_version)
        sequences = self._floats(self.sequences, self.sequence_version)
        shared = string_bytes(self.model_version) + string_bytes(self.arm)
        decided = varint(self.decided_ms)
        source = string_bytes(self.source)
        out: list[bytes] = []
        for k in range(n):
            tx, score = self.transactions[k], scores[4 * k : 4 * k + 4]
            out.append(b"".join((
                string_bytes(tx["transaction_id"]), string_bytes(tx["customer_id"]), _OUTCOME[int(self.outcomes[k])],
                score, _PRESENT, score, _NULL, _ROUTE[int(self.routes[k])], self._reasons(self.reasons[k], source),
                shared, varint(int(tx["event_time"])), decided, latencies[4 * k : 4 * k + 4], features[k], sequences[k],
            )))  # fmt: skip
        return out

    @staticmethod
    def _floats(rows: np.ndarray, version: str) -> list[bytes]:
        """Per row: the array<float> and the version string after it (empty arrays carry no version)."""
        return _float_rows(rows, string_bytes(version if rows.shape[1] else ""))

    @staticmethod
    def _reasons(reasons: Sequence[tuple[str, float, float]], source: bytes) -> bytes:
        if not reasons:
            return _EMPTY
        parts = [varint(min(len(reasons), 4))]
        for name, value, contribution in reasons[:4]:
            parts += [string_bytes(name), _PRESENT + float_bytes(float(value)) if math.isfinite(value) else _NULL,
                      float_bytes(float(contribution)), source]  # fmt: skip
        parts.append(_EMPTY)
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class BufferColumns:
    """One arm's band rows of a batch, on their way to the deep stage: row k is one BufferRecord."""

    transactions: Sequence[Transaction]
    features: np.ndarray  # (n, F) float32
    feature_set_version: str
    scores: np.ndarray  # (n,) XGBoost's probability
    margins: np.ndarray  # (n,) its margin
    leaves: np.ndarray  # (n, trees) leaf index per tree
    model_version: str
    arm: str
    ingest_ms: np.ndarray  # (n,) each input record's append time
    scored_ms: int
    partitions: np.ndarray  # (n,) source partition
    offsets: np.ndarray  # (n,) source offset
    sequences: np.ndarray  # (n, S) float32
    sequence_version: str

    def records(self) -> Iterator[BufferRecord]:
        """The rows as BufferRecords (what `write` encodes)."""
        for k, tx in enumerate(self.transactions):
            yield BufferRecord(tx, tuple(self.features[k].tolist()), self.feature_set_version, float(self.scores[k]),
                               float(self.margins[k]), tuple(self.leaves[k].tolist()), self.model_version, self.arm,
                               int(self.ingest_ms[k]), self.scored_ms, int(self.partitions[k]), int(self.offsets[k]),
                               tuple(self.sequences[k].tolist()), self.sequence_version)  # fmt: skip

    def write(self) -> list[bytes]:
        """Each row's ScoredTransaction body (unframed), as `Codec.encode_buffer` writes its record."""
        transaction = writer_for("Transaction")
        if transaction is None:  # pragma: no cover - the bundled schema compiles (tests/unit/test_writer.py)
            raise RuntimeError("the Transaction schema did not compile")
        scores, margins = _float32(self.scores).tobytes(), _float32(self.margins).tobytes()
        features = _float_rows(self.features, string_bytes(self.feature_set_version))
        leaves = int_rows(np.asarray(self.leaves, dtype=np.int64))
        shared = string_bytes(self.model_version) + string_bytes(self.arm)
        scored = varint(self.scored_ms)
        sequences = _float_rows(self.sequences, string_bytes(self.sequence_version))
        out: list[bytes] = []
        for k, tx in enumerate(self.transactions):
            out.append(b"".join((
                transaction.write(tx), features[k], scores[4 * k : 4 * k + 4], margins[4 * k : 4 * k + 4], leaves[k], shared,
                varint(int(self.ingest_ms[k])), scored, varint(int(self.partitions[k])), varint(int(self.offsets[k])),
                sequences[k],
            )))  # fmt: skip
        return out
