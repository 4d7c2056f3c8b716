"""The bench's columnar decoding sketch (bench/columnar.py) gives fastavro's records, and
refuses a batch that is not consecutive Transaction bodies (its figures in the README rest
on both)."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from fastavro import schemaless_reader

from bench.columnar import Malformed, decode_columns, to_records
from schemas import wire
from stream.kafka.codec import Codec, unframe
from stream.testing import sample_transaction

CODEC = Codec()


def bodies(txs: list[dict[str, object]]) -> list[bytes]:
    return [unframe(CODEC.encode("Transaction", tx))[1] for tx in txs]


def test_columns_give_fastavros_records() -> None:
    # Nulls and values in every nullable field, negative and multi-byte varints, non-ASCII text.
    txs = [sample_transaction(i) for i in range(40)]
    txs += [sample_transaction(40, ip="10.0.0.1", country=None, mcc=-1, amount=2**40, customer_id="c-é")]
    body = bodies(txs)
    expected = [schemaless_reader(io.BytesIO(b), wire("Transaction"), None) for b in body]
    assert to_records(*decode_columns(body)) == expected


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:-1],  # truncated: the last field runs past the record
        lambda b: b + b"\x00",  # a trailing byte
        lambda b: b"\x80" * 11 + b,  # a varint longer than 10 bytes
    ],
)
def test_a_malformed_body_is_refused(mangle: Callable[[bytes], bytes]) -> None:
    body = bodies([sample_transaction(i) for i in range(3)])
    body[1] = mangle(body[1])
    with pytest.raises(Malformed):
        decode_columns(body)
