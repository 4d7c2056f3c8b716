"""The writer compiled from a schema writes the bytes fastavro writes, for every bundled schema."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pytest
from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from stream.kafka.writer import Unsupported, compile_type, float_array, int_array, int_rows, varint, writer_for
from stream.testing import sample_transaction

floats = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e300, max_value=1e300),  # beyond float32: inf, as fastavro's C cast
    st.just(math.nan),
)
texts = st.text(max_size=12)
longs = st.integers(-(2**63), 2**63 - 1)
float32 = st.floats(width=32, allow_nan=False)
scalars = st.one_of(float32, st.floats(min_value=-1e300, max_value=1e300), st.just(math.inf))


def fastavro_bytes(name: str, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, schemas.wire(name), record)
    return buf.getvalue()


@st.composite
def decisions(draw: st.DrawFn) -> dict[str, Any]:
    reason = st.fixed_dictionaries({"feature": texts, "value": st.none() | float32, "contribution": float32,
                                    "source": st.sampled_from(["xgb", "deep", "rules"])})  # fmt: skip
    return {
        "transaction_id": draw(texts), "customer_id": draw(texts),
        "decision": draw(st.sampled_from(["APPROVE", "REVIEW", "BLOCK"])), "score": draw(scalars),
        "xgb_score": draw(st.none() | scalars), "deep_score": draw(st.none() | float32),
        "route": draw(st.sampled_from(["XGB_APPROVE", "XGB_BLOCK", "DEEP", "XGB_FALLBACK", "RULES", "SAFE_DEFAULT"])),
        "reasons": draw(st.lists(reason, max_size=4)), "model_version": draw(texts), "arm": draw(texts),
        "event_time": draw(longs), "decided_at": draw(longs), "latency_ms": draw(float32),
        "features": draw(st.lists(floats, max_size=40)), "feature_set_version": draw(texts),
        "sequence": draw(st.lists(floats, max_size=200)), "sequence_version": draw(texts),
    }  # fmt: skip


@st.composite
def scored(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "transaction": sample_transaction(draw(st.integers(0, 10**6))),
        "features": draw(st.lists(floats, max_size=40)), "feature_set_version": draw(texts),
        "xgb_score": draw(float32), "xgb_margin": draw(float32),
        "leaf_indices": draw(st.lists(st.integers(-(2**31), 2**31 - 1) | st.integers(0, 300), max_size=250)),
        "model_version": draw(texts),
        "arm": draw(texts), "ingest_time": draw(longs), "scored_at": draw(longs),
        "source_partition": draw(st.integers(-(2**31), 2**31 - 1)), "source_offset": draw(longs),
        "sequence": draw(st.lists(floats, max_size=200)), "sequence_version": draw(texts),
    }  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(decisions())
def test_decisions_are_written_as_fastavro_writes_them(record: dict[str, Any]) -> None:
    writer = writer_for("Decision")
    assert writer is not None
    assert writer.write(record) == fastavro_bytes("Decision", record)


@settings(max_examples=200, deadline=None)
@given(scored())
def test_buffer_records_are_written_as_fastavro_writes_them(record: dict[str, Any]) -> None:
    writer = writer_for("ScoredTransaction")
    assert writer is not None
    assert writer.write(record) == fastavro_bytes("ScoredTransaction", record)


@st.composite
def transactions(draw: st.DrawFn) -> dict[str, Any]:
    nullable_text, nullable_double = st.none() | texts, st.none() | st.floats(allow_nan=False)
    return {
        "transaction_id": draw(texts), "event_time": draw(longs), "customer_id": draw(texts), "terminal_id": draw(texts),
        "amount": draw(longs), "currency": draw(texts),
        "channel": draw(st.sampled_from(["POS", "ECOM", "ATM", "MOTO", "CONTACTLESS"])),
        "mcc": draw(st.integers(-(2**31), 2**31 - 1)), "device_id": draw(nullable_text), "ip": draw(nullable_text),
        "latitude": draw(nullable_double), "longitude": draw(nullable_double), "country": draw(nullable_text),
    }  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(transactions(), st.booleans())
def test_transactions_and_labels_are_written_as_fastavro_writes_them(tx: dict[str, Any], fraud: bool) -> None:
    writer = writer_for("Transaction")
    assert writer is not None
    assert writer.write(tx) == fastavro_bytes("Transaction", tx)
    label = {"transaction_id": tx["transaction_id"], "customer_id": tx["customer_id"], "terminal_id": tx["terminal_id"],
             "is_fraud": fraud, "label_time": tx["event_time"]}  # fmt: skip
    labels = writer_for("Label")
    assert labels is not None  # event_time and source missing: their defaults, as fastavro takes them
    assert labels.write(label) == fastavro_bytes("Label", label)


def test_a_schema_shape_it_does_not_compile_is_refused_by_name() -> None:
    for shape in ({"type": "map", "values": "long"}, ["null", "string", "long"], "io.fraudstream.Nowhere"):
        with pytest.raises(Unsupported):
            compile_type(shape, {})


def test_varints_and_arrays_are_pinned() -> None:
    assert [varint(n).hex() for n in (0, -1, 1, 63, 64, -65, 2**62)] == [
        "00",
        "01",
        "02",
        "7e",
        "8001",
        "8101",
        "80808080808080808001",
    ]
    assert [int_array(v).hex() for v in ([], [0, 1, 63], [64, -65, 2**62], [-(2**63), 2**63 - 1])] == [
        "00",
        "0600027e00",
        "06800181018080808080808080800100",
        "04ffffffffffffffffff01feffffffffffffffff0100",
    ]
    matrix = np.array([[0, 64, -65], [1, 2**62, 3]])
    assert int_rows(matrix) == [int_array(row) for row in matrix] and int_rows(matrix[:, :0]) == [b"\x00", b"\x00"]
    assert float_array([]) == b"\x00"
    assert float_array([1.0, -0.5]).hex() == "04" + "0000803f" + "000000bf" + "00"
