"""Golden tests of the wire format: framing bytes, schema round-trips, failures as values."""

from __future__ import annotations

import pytest
from confluent_kafka import Message

import schemas
from stream.errors import DecodeError
from stream.kafka.codec import HEADER, BundledIds, Codec, frame, unframe
from stream.testing import sample_transaction

CODEC = Codec()

SCORED = {
    "transaction": sample_transaction(1),
    "features": [1.0, 2.5, -3.0],
    "feature_set_version": "fs1",
    "xgb_score": 0.25,
    "xgb_margin": -1.25,  # float32-exact values keep the round trip exact
    "leaf_indices": [3, 7, 1],
    "model_version": "v1",
    "arm": "A",
    "ingest_time": 1_767_225_600_123,
    "scored_at": 1_767_225_600_130,
    "source_partition": 2,
    "source_offset": 42,
    "sequence": [1.0, 0.5],
    "sequence_version": "seq1",
}
DECISION = {
    "transaction_id": "tx-1",
    "customer_id": "c-1",
    "decision": "REVIEW",
    "score": 0.5,
    "xgb_score": 0.25,
    "deep_score": 0.5,
    "route": "DEEP",
    "reasons": [{"feature": "amount", "value": 12.5, "contribution": 0.75, "source": "xgb"}],
    "model_version": "v1",
    "arm": "A",
    "event_time": 1_767_225_600_000,
    "decided_at": 1_767_225_600_140,
    "latency_ms": 17.0,
    "features": [0.5, -2.0, 3.25],
    "feature_set_version": "fs1",
    "sequence": [1.0, -0.5],
    "sequence_version": "seq1",
}
LABEL = {
    "transaction_id": "tx-1",
    "customer_id": "c-1",
    "terminal_id": "m-1",
    "is_fraud": True,
    "label_time": 1_767_830_400_000,
    "event_time": 1_767_225_600_000,
    "source": "chargeback",
}
RECORDS = {
    "Transaction": sample_transaction(7),
    "ScoredTransaction": SCORED,
    "Decision": DECISION,
    "Label": LABEL,
}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_every_schema_round_trips(name: str) -> None:
    raw = CODEC.encode(name, RECORDS[name])
    assert CODEC.decode(name, raw) == RECORDS[name]


def test_float_fields_round_trip_as_float32() -> None:
    back = CODEC.decode("Decision", CODEC.encode("Decision", DECISION))
    assert back["score"] == 0.5
    assert back["reasons"][0]["value"] == 12.5


def test_framing_bytes_are_pinned() -> None:
    assert frame(1001, b"\x02") == b"\x00\x00\x00\x03\xe9\x02"
    assert HEADER.size == 5
    raw = CODEC.encode("Label", LABEL)
    assert raw[:5] == b"\x00\x00\x00\x03\xec"  # magic 0, id 1004
    assert raw.hex() == (
        "00000003ec"  # header
        "0874782d3106632d31066d2d3101"  # "tx-1", "c-1", "m-1", true
        "80b0b9aef366"  # label_time (zigzag varint)
        "80a0d5edee66"  # event_time
        "146368617267656261636b"  # "chargeback"
    )


def test_decision_carries_its_features_then_its_sequence_after_the_v1_fields() -> None:
    raw = CODEC.encode("Decision", DECISION)
    assert raw[:5] == b"\x00\x00\x00\x03\xef"  # id 1007
    # the v1 body, then: 3 floats (block count 3, little-endian float32s, end), "fs1",
    # 2 floats, "seq1"
    assert raw.hex().endswith("060000003f000000c0000050400006667331040000803f000000bf000873657131")


def test_buffer_records_carry_the_sequence_last() -> None:
    raw = CODEC.encode("ScoredTransaction", SCORED)
    assert raw[:5] == b"\x00\x00\x00\x03\xee"  # id 1006
    assert raw.hex().endswith("0454040000803f0000003f000873657131")  # offset 42, [1.0, 0.5], "seq1"


def test_records_written_before_the_sequence_still_decode() -> None:
    import io

    from fastavro import schemaless_writer

    v2 = {k: v for k, v in DECISION.items() if k not in ("sequence", "sequence_version")}
    buf = io.BytesIO()
    schemaless_writer(buf, schemas.earlier_wire(1005), v2)
    decoded = CODEC.decode_decision(frame(1005, buf.getvalue()))
    assert decoded.sequence == () and decoded.sequence_version == "" and decoded.features == (0.5, -2.0, 3.25)
    v1 = {k: v for k, v in SCORED.items() if k not in ("sequence", "sequence_version")}
    buf = io.BytesIO()
    schemaless_writer(buf, schemas.earlier_wire(1002), v1)
    assert CODEC.decode("ScoredTransaction", frame(1002, buf.getvalue())) == {**v1, "sequence": [], "sequence_version": ""}


def test_decisions_written_before_features_still_decode() -> None:
    import io

    from fastavro import schemaless_writer

    v1 = {k: v for k, v in DECISION.items() if k not in ("features", "feature_set_version", "sequence", "sequence_version")}
    buf = io.BytesIO()
    schemaless_writer(buf, schemas.earlier_wire(1003), v1)
    decoded = CODEC.decode_decision(frame(1003, buf.getvalue()))
    assert decoded.features == () and decoded.feature_set_version == ""
    assert decoded.transaction_id == "tx-1" and decoded.route.name == "DEEP" and decoded.score == 0.5


def test_bundled_ids_are_stable() -> None:
    assert {n: schemas.fixed_id(n) for n in schemas.BUNDLED} == {
        "Transaction": 1001,
        "ScoredTransaction": 1006,
        "Decision": 1007,
        "Label": 1004,
    }
    assert schemas.EARLIER == {
        1002: ("ScoredTransaction", "scored_transaction.v1.avsc"),
        1003: ("Decision", "decision.v1.avsc"),
        1005: ("Decision", "decision.v2.avsc"),
    }
    assert BundledIds().writer(1007, "Decision") is schemas.wire("Decision")
    assert BundledIds().writer(1003, "Decision") is schemas.earlier_wire(1003)
    with pytest.raises(DecodeError, match="unknown schema id 9"):
        BundledIds().writer(9, "Decision")
    with pytest.raises(DecodeError, match="schema id 1003 is Decision, expected Label"):
        BundledIds().writer(1003, "Label")
    with pytest.raises(DecodeError, match="schema id 1007 is Decision, expected Label"):
        BundledIds().writer(1007, "Label")


def test_unframe_rejects_short_and_null() -> None:
    with pytest.raises(DecodeError, match="shorter than"):
        unframe(b"\x00\x00")
    with pytest.raises(DecodeError, match="null value"):
        unframe(None)


def _good() -> bytes:
    return CODEC.encode("Transaction", sample_transaction(3))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not avro at all", "magic byte"),
        (b"\x01" + _good()[1:], "unknown magic byte 1"),
        (b"\x00\x00\x00\x00\x07" + _good()[5:], "unknown schema id 7"),
        (_good()[:20], "Avro body unreadable"),
        (_good() + b"\x00\x01", "trailing bytes"),
        (CODEC.encode("Label", LABEL), "is Label, expected Transaction"),
        (None, "null value"),
        (CODEC.encode("Transaction", sample_transaction(3, amount=-5)), "amount -5 is negative"),
        (CODEC.encode("Transaction", sample_transaction(3, transaction_id="")), "transaction_id is empty"),
        (CODEC.encode("Transaction", sample_transaction(3, event_time=5)), "outside 2000..2100"),
        (CODEC.encode("Transaction", sample_transaction(3, latitude=float("nan"))), "latitude is not finite"),
    ],
)
def test_bad_records_come_back_as_failures(raw: bytes | None, reason: str) -> None:
    batch = CODEC.decode_values("Transaction", [_good(), raw, _good()])
    assert len(batch.oks) == 2
    assert len(batch.errs) == 1
    failure = batch.errs[0]
    assert reason in failure.reason
    assert failure.raw == raw
    assert failure.source.offset == 1


def test_decode_messages_keeps_provenance() -> None:
    good = Message(topic="fraud.transactions", partition=3, offset=17, key=b"c-1", value=_good(), timestamp=(1, 1234))
    bad = Message(topic="fraud.transactions", partition=3, offset=18, key=None, value=b"\xff", timestamp=(1, 1235))
    batch = CODEC.decode_messages("Transaction", [good, bad])
    assert [d.source.offset for d in batch.oks] == [17]
    assert batch.oks[0].source.key == b"c-1"
    assert batch.oks[0].source.timestamp_ms == 1234
    (err,) = batch.errs
    assert (err.source.topic, err.source.partition, err.source.offset) == ("fraud.transactions", 3, 18)
    assert err.error is DecodeError
    assert err.raw == b"\xff"
