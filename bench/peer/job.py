"""Stage 1's job as both peers run it, one message at a time: what `fraudstream score` computes
for a transaction, written with the library calls a user of a stream framework would make.

The framework holds the state (a card per customer, a terminal ring per terminal) and hands
it to `card_step` and `terminal_step` as bytes; these return the new bytes and what goes on.
Shared with `fraudstream score`: the input topic and its Avro records (Confluent framing,
bundled schema ids), the feature definitions (`models.features` over the fs2 card and the
terminal ring), the XGBoost model file and thresholds, and decisions in the Decision schema.

What the peers leave out of stage 1's work, so a ratio flatters them: the band goes to no
buffer topic (every transaction is decided here from XGBoost), no leaves or reasons, no DLQ,
no fallback chain, no repeat-id ledger.
"""

from __future__ import annotations

import io
import json
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from fastavro import schemaless_reader, schemaless_writer

from models.card import CARD_BYTES, append, card_from_bytes, empty_card
from models.features import FeatureEngine
from models.featureset import FEATURE_SET_VERSION, TERM_IDX, TX, ring_add, ring_from_bytes
from models.sequence import SEQUENCE_VERSION
from models.units import DAY_MS
from schemas import BUNDLED, wire

HEADER = struct.Struct(">bI")


class Job:
    """The model, the feature engine and the Avro schemas of one run, and its progress."""

    def __init__(self, model_dir: Path) -> None:
        self.booster = xgb.Booster()
        self.booster.load_model(str(model_dir / "xgb.ubj"))
        manifest = json.loads((model_dir / "manifest.json").read_text())
        self.thresholds, self.version = manifest["thresholds"], model_dir.name
        self.engine = FeatureEngine(int(manifest.get("train_config", {}).get("delay_days", 7)))
        self.tx_schema = wire("Transaction")  # timestamps as epoch ms, as the pipeline reads them
        self.decision_schema, self.decision_header = wire("Decision"), HEADER.pack(0, BUNDLED["Decision"][1])
        self.records, self.first, self.last = 0, 0.0, 0.0

    def decode(self, value: bytes) -> dict[str, Any]:
        """Magic byte, schema id, Avro body: the pipeline's wire format."""
        record: dict[str, Any] = schemaless_reader(io.BytesIO(value[HEADER.size :]), self.tx_schema, None)  # type: ignore[assignment]
        return record

    def encode(self, decision: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self.decision_header)
        schemaless_writer(out, self.decision_schema, decision)
        return out.getvalue()

    def card_step(self, blob: bytes | None, tx: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """The customer's card → its features and sequence; the card with this transaction."""
        if not self.records:
            self.first = time.perf_counter()
        card = card_from_bytes(blob) if blob and len(blob) == CARD_BYTES else empty_card()
        result = self.engine.transform([tx], {tx["customer_id"]: card}, {})
        for records in result.appended.values():
            append(card, records)
        return card.tobytes(), {
            **tx,
            "features": result.features[0].tolist(),
            "sequence": result.sequences[0].reshape(-1).tolist(),
        }

    def terminal_step(self, blob: bytes | None, tx: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """The terminal's ring → its risk feature, the score and the decision; the ring counted."""
        ring = ring_from_bytes(blob)
        day = int(tx["event_time"]) // DAY_MS
        x = np.array(tx["features"], dtype=np.float32)
        x[TERM_IDX] = self.engine.terminal(ring[None], np.array([day]))[0]
        ring_add(ring, day, TX, 1)
        p = float(self.booster.inplace_predict(x[None, :])[0])
        th = self.thresholds
        if p < th["approve_below"]:
            outcome, route = "APPROVE", "XGB_APPROVE"
        elif p > th["block_above"]:
            outcome, route = "BLOCK", "XGB_BLOCK"
        else:
            outcome, route = ("REVIEW" if p > th["fallback_review_above"] else "APPROVE"), "XGB_FALLBACK"
        self.records += 1
        self.last = time.perf_counter()
        decision = {"transaction_id": tx["transaction_id"], "customer_id": tx["customer_id"], "decision": outcome,
                    "score": p, "xgb_score": p, "deep_score": None, "route": route, "reasons": [],
                    "model_version": self.version, "arm": "A", "event_time": tx["event_time"],
                    "decided_at": int(time.time() * 1000), "latency_ms": 0.0, "features": x.tolist(),
                    "feature_set_version": FEATURE_SET_VERSION, "sequence": tx["sequence"],
                    "sequence_version": SEQUENCE_VERSION}  # fmt: skip
        return ring.tobytes(), decision

    def report(self) -> str:
        """The one JSON line the bench reads: records, seconds (first to last decided), per_s."""
        secs = self.last - self.first
        return json.dumps({"records": self.records, "seconds": secs, "per_s": self.records / secs if secs > 0 else 0.0})
