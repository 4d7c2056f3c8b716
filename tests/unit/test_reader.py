"""The batch reader of Transactions (stream/kafka/reader.py) against fastavro, record for record:
what it reads is what fastavro reads, and what it does not read is left to fastavro."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import fixed_id
from stream.errors import PoisonError
from stream.kafka.codec import Codec, frame
from stream.kafka.reader import BATCH_MIN, CHANNELS, read_transactions
from stream.testing import sample_transaction

CODEC = Codec()
SCHEMA_ID = fixed_id("Transaction")


def fastavro(raw: bytes | None) -> dict[str, Any] | None:
    """The record the per-record path gives (fastavro, then the contract's checks), None when it refuses it."""
    try:
        return CODEC.decode("Transaction", raw)
    except PoisonError:
        return None


def agree(raws: list[bytes | None]) -> int:
    """Every record the batch reader reads equals fastavro's, in its keys' order too; returns how many it read."""
    read = 0
    for raw, mine in zip(raws, read_transactions(raws, SCHEMA_ID), strict=True):
        if mine is not None:
            expected = fastavro(raw)
            assert expected is not None, raw
            assert list(mine.items()) == list(expected.items())
            assert all(type(mine[k]) is type(expected[k]) for k in mine)
            read += 1
    return read


text = st.text(max_size=12)
doubles = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(-200, 200))
transactions = st.fixed_dictionaries(
    {
        "transaction_id": text,
        "event_time": st.integers(-(2**63), 2**63 - 1) | st.integers(946_684_800_000 - 5, 4_102_444_800_000 + 5),
        "customer_id": text,
        "terminal_id": text,
        "amount": st.integers(-(2**63), 2**63 - 1) | st.integers(-2, 10**10 + 2),
        "currency": text,
        "channel": st.sampled_from(CHANNELS),
        "mcc": st.integers(-(2**31), 2**31 - 1),
        "device_id": st.none() | text,
        "ip": st.none() | text,
        "latitude": doubles,
        "longitude": doubles,
        "country": st.none() | text,
    }
)


def test_plain_records_are_all_read_by_the_batch_reader() -> None:
    txs = [sample_transaction(i) for i in range(60)] + [sample_transaction(60, customer_id="c-é", mcc=-1, amount=0, ip="::1")]
    raws: list[bytes | None] = [CODEC.encode("Transaction", tx) for tx in txs]
    assert agree(raws) == len(raws)


@settings(max_examples=300, deadline=None)
@given(st.lists(transactions, min_size=1, max_size=8))
def test_any_encodable_transaction_is_read_as_fastavro_reads_it(txs: list[dict[str, Any]]) -> None:
    raws: list[bytes | None] = [CODEC.encode("Transaction", tx) for tx in txs]
    read = agree(raws)
    plain = [r for r in raws if fastavro(r) is not None]
    assert read == len(plain)  # a record fastavro and the contract accept is the plain case


@settings(max_examples=500, deadline=None)
@given(st.lists(transactions, min_size=1, max_size=4), st.data())
def test_hostile_bytes_are_read_as_fastavro_reads_them_or_left_to_it(txs: list[dict[str, Any]], data: st.DataObject) -> None:
    raws: list[bytes | None] = []
    for tx in txs:
        raw = bytearray(CODEC.encode("Transaction", tx))
        action = data.draw(st.sampled_from(["flip", "cut", "extend", "id", "none", "random"]))
        at = data.draw(st.integers(0, len(raw) - 1))
        if action == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[at:]
        elif action == "extend":
            raw += data.draw(st.binary(min_size=1, max_size=3))
        elif action == "id":
            raw[1:5] = data.draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
        elif action == "random":
            raw = bytearray(frame(SCHEMA_ID, data.draw(st.binary(max_size=60))))
        raws.append(None if action == "none" else bytes(raw))
    agree(raws)


def test_the_codec_reads_the_rest_one_by_one_and_keeps_their_reasons() -> None:
    good = CODEC.encode("Transaction", sample_transaction(1))
    negative = CODEC.encode("Transaction", sample_transaction(2, amount=-5))
    assert read_transactions([good, None, negative, good[:-1], good + b"\x00"], SCHEMA_ID)[1:] == [None] * 4
    raws = [good, None, negative, good[:-1], good + b"\x00", *[good] * BATCH_MIN]  # a batch the reader takes
    batch = CODEC.decode_values("Transaction", raws)
    assert [d.value for d in batch.oks] == [sample_transaction(1)] * (1 + BATCH_MIN)
    assert [d.source.offset for d in batch.oks] == [0, *range(5, 5 + BATCH_MIN)]
    reasons = [f.reason for f in batch.errs]
    assert reasons[:2] == ["null value (tombstone) where a record was expected", "amount -5 is negative"]
    assert reasons[3] == "1 trailing bytes after the Avro record"
    assert [f.source.offset for f in batch.errs] == [1, 2, 3, 4]
