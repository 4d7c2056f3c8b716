"""Stage 1 written the way a Quix Streams user would write it: the bench's peer.

    .venv-peer/bin/python -m bench.peer.app BOOTSTRAP IN_TOPIC OUT_TOPIC MODEL_DIR GROUP STATE_DIR

Run from the repository root, in its own environment (bench/peer/setup.sh: quixstreams pins
an older confluent-kafka). What it shares with `fraudstream score`: the input topic and its
Avro records (Confluent framing, bundled schema ids), the feature definitions (`models.features`
over the fs2 card, and the terminal ring), the XGBoost model file and thresholds of the same
version, decisions in the Decision schema on the decisions topic, and exactly-once processing.
How it does it, idiomatically: one message at a time through a StreamingDataFrame; the card
state in Quix's RocksDB state store keyed by the input key (the customer); the terminal
state in a second store after `group_by("terminal_id")` (a repartition topic), since state
is per key; changelog topics for recovery, as Quix makes them.

What it leaves out of stage 1's work, so the ratio flatters the peer: the band goes to no buffer
topic (every transaction is decided here from XGBoost), no leaves or reasons, no DLQ, no
fallback chain, no repeat-id ledger. Prints one JSON line: records, seconds (first to last
processed), per_s.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from fastavro import schemaless_reader, schemaless_writer
from quixstreams import Application, State
from quixstreams.models.serializers import Deserializer, SerializationContext, Serializer
from quixstreams.state.rocksdb import RocksDBOptions

from models.card import CARD_BYTES, append, card_from_bytes, empty_card
from models.features import FeatureEngine
from models.featureset import FEATURE_SET_VERSION, TERM_IDX, TX, ring_add, ring_from_bytes
from models.sequence import SEQUENCE_VERSION
from models.units import DAY_MS
from schemas import BUNDLED, wire

HEADER = struct.Struct(">bI")


class ConfluentAvroDeserializer(Deserializer):
    """Magic byte, schema id, Avro body: the pipeline's wire format."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.schema = wire(name)  # timestamps as epoch ms, as the pipeline reads them

    def __call__(self, value: bytes, ctx: SerializationContext) -> Any:
        return schemaless_reader(io.BytesIO(value[HEADER.size :]), self.schema, None)


class ConfluentAvroSerializer(Serializer):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.schema, self.header = wire(name), HEADER.pack(0, BUNDLED[name][1])

    def __call__(self, value: Any, ctx: SerializationContext) -> bytes:
        out = io.BytesIO()
        out.write(self.header)
        schemaless_writer(out, self.schema, value)
        return out.getvalue()


def _bytes_dumps(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def main() -> None:
    bootstrap, in_topic, out_topic, model_dir, group, state_dir = sys.argv[1:7]
    model = Path(model_dir)
    booster = xgb.Booster()
    booster.load_model(str(model / "xgb.ubj"))
    manifest = json.loads((model / "manifest.json").read_text())
    th, version = manifest["thresholds"], model.name
    engine = FeatureEngine(int(manifest.get("train_config", {}).get("delay_days", 7)))
    seen = {"n": 0, "first": 0.0, "last": 0.0}

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=state_dir,
        rocksdb_options=RocksDBOptions(dumps=_bytes_dumps, loads=lambda raw: raw),
        loglevel="WARNING",
    )
    source = app.topic(in_topic, value_deserializer=ConfluentAvroDeserializer("Transaction"), key_deserializer="str")
    sink = app.topic(out_topic, value_serializer=ConfluentAvroSerializer("Decision"), key_serializer="str")

    def card_step(tx: dict[str, Any], state: State) -> dict[str, Any]:
        if not seen["n"]:
            seen["first"] = time.perf_counter()
        blob = state.get("card")
        card = card_from_bytes(blob) if blob and len(blob) == CARD_BYTES else empty_card()
        result = engine.transform([tx], {tx["customer_id"]: card}, {})
        for records in result.appended.values():
            append(card, records)
        state.set("card", card.tobytes())
        return {**tx, "features": result.features[0].tolist(), "sequence": result.sequences[0].reshape(-1).tolist()}

    def terminal_step(tx: dict[str, Any], state: State) -> dict[str, Any]:
        ring = ring_from_bytes(state.get("ring"))
        day = int(tx["event_time"]) // DAY_MS
        x = np.array(tx["features"], dtype=np.float32)
        x[TERM_IDX] = engine.terminal(ring[None], np.array([day]))[0]
        ring_add(ring, day, TX, 1)
        state.set("ring", ring.tobytes())
        p = float(booster.inplace_predict(x[None, :])[0])
        if p < th["approve_below"]:
            outcome, route = "APPROVE", "XGB_APPROVE"
        elif p > th["block_above"]:
            outcome, route = "BLOCK", "XGB_BLOCK"
        else:
            outcome, route = ("REVIEW" if p > th["fallback_review_above"] else "APPROVE"), "XGB_FALLBACK"
        now = int(time.time() * 1000)
        seen["n"] += 1
        seen["last"] = time.perf_counter()
        return {"transaction_id": tx["transaction_id"], "customer_id": tx["customer_id"], "decision": outcome, "score": p,
                "xgb_score": p, "deep_score": None, "route": route, "reasons": [], "model_version": version, "arm": "A",
                "event_time": tx["event_time"], "decided_at": now, "latency_ms": 0.0, "features": x.tolist(),
                "feature_set_version": FEATURE_SET_VERSION, "sequence": tx["sequence"],
                "sequence_version": SEQUENCE_VERSION}  # fmt: skip

    sdf = app.dataframe(source)
    sdf = sdf.apply(card_step, stateful=True)
    sdf = sdf.group_by("terminal_id")
    sdf = sdf.apply(terminal_step, stateful=True)
    sdf.to_topic(sink, key=lambda d: d["transaction_id"])
    app.run(timeout=6.0)
    secs = seen["last"] - seen["first"]
    print(json.dumps({"records": seen["n"], "seconds": secs, "per_s": seen["n"] / secs if secs > 0 else 0.0}), flush=True)


if __name__ == "__main__":
    main()
