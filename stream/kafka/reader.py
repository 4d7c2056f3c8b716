"""Stage 1's input read a batch at a time, and the contract a Transaction must meet.

`read_transactions` scans a batch's framed records in one compiled pass (numba) over their
bytes, instead of one fastavro call per record, and gives per record the dict fastavro
gives (the same keys in the same order, the same values), or None where the record is not
the plain case: another schema id than ours (an evolved or earlier writer), a tombstone,
bytes that do not make exactly one record, a varint past 64 bits, an int past 32, an enum
or union index out of range, text that is not UTF-8, or a value the contract refuses. The
codec reads those one by one with fastavro and `validate_transaction`, as every record was
read before, so every dead letter keeps its exact reason. The scan only compares and
copies; tests/unit/test_reader.py holds it to fastavro, hypothesis included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numba import njit

from schemas import schema_json
from stream.errors import ValidationError

_FIELDS = [f["name"] for f in schema_json("Transaction")["fields"]]
_EXPECTED = ["transaction_id", "event_time", "customer_id", "terminal_id", "amount", "currency", "channel", "mcc",
             "device_id", "ip", "latitude", "longitude", "country"]  # fmt: skip
if _FIELDS != _EXPECTED:  # pragma: no cover - the scan below follows this layout: change both together
    raise ImportError(f"stream.kafka.reader scans Transaction fields {_EXPECTED}, the schema has {_FIELDS}")
CHANNELS: tuple[str, ...] = tuple(
    next(f for f in schema_json("Transaction")["fields"] if f["name"] == "channel")["type"]["symbols"]
)
# What a field is to the scan: a string, a long, an int, the channel enum, or a union of null and a string / a double.
_STR, _LONG, _INT, _ENUM, _OPT_STR, _OPT_DOUBLE = range(6)
_KINDS = np.array([_STR, _LONG, _STR, _STR, _LONG, _STR, _ENUM, _INT, _OPT_STR, _OPT_STR, _OPT_DOUBLE, _OPT_DOUBLE, _OPT_STR])
_N_CHANNELS = len(CHANNELS)
# The scan costs about 45 µs a call and 1.8 µs a record, fastavro 7 µs a record (`python -m
# bench.codec`): smaller batches are read one by one.
BATCH_MIN = 12


# Contract limits for a Transaction. Amounts are minor units; a single card payment
# above 10^10 minor units (100 million in a 2-decimal currency) is treated as corrupt.
MAX_AMOUNT = 10_000_000_000
MIN_EVENT_TIME_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_EVENT_TIME_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


def validate_transaction(tx: Mapping[str, Any]) -> None:
    """Contract checks Avro types cannot express; ValidationError names the field."""
    if not tx["transaction_id"]:
        raise ValidationError("transaction_id is empty")
    if not tx["customer_id"]:
        raise ValidationError("customer_id is empty")
    if not tx["terminal_id"]:
        raise ValidationError("terminal_id is empty")
    amount = tx["amount"]
    if amount < 0:
        raise ValidationError(f"amount {amount} is negative")
    if amount > MAX_AMOUNT:
        raise ValidationError(f"amount {amount} exceeds the contract limit {MAX_AMOUNT}")
    t = tx["event_time"]
    if not MIN_EVENT_TIME_MS <= t <= MAX_EVENT_TIME_MS:
        raise ValidationError(f"event_time {t} ms is outside 2000..2100")
    for field in ("latitude", "longitude"):
        v = tx.get(field)
        if v is not None and not math.isfinite(v):
            raise ValidationError(f"{field} is not finite")
    lat, lon = tx.get("latitude"), tx.get("longitude")
    if lat is not None and not -90.0 <= lat <= 90.0:
        raise ValidationError(f"latitude {lat} is outside -90..90")
    if lon is not None and not -180.0 <= lon <= 180.0:
        raise ValidationError(f"longitude {lon} is outside -180..180")


@njit(cache=True, nogil=True)
def _varint(buf: np.ndarray, pos: int, end: int) -> tuple[int, int, bool]:
    """The zigzag varint at `pos`: (value, position after it, ok)."""
    raw = np.uint64(0)
    for k in range(10):
        if pos + k >= end:
            return 0, pos, False
        b = np.uint64(buf[pos + k])
        if k == 9 and b > 1:
            return 0, pos, False  # past 64 bits
        raw |= (b & np.uint64(0x7F)) << np.uint64(7 * k)
        if b < 0x80:
            value = np.int64(raw >> np.uint64(1)) ^ -np.int64(raw & np.uint64(1))
            return int(value), pos + k + 1, True
    return 0, pos, False


@njit(cache=True, nogil=True)
def _scan(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, schema_id: int, kinds: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """Per record (framed, at buf[starts[k]:ends[k]]): ok, and per field in `out[k, f]` its
    (value or position, length): a long or enum index as (value, 0), a string as (position,
    length), a present double as (position, 8), a null as (0, -1)."""
    n = starts.shape[0]
    ok = np.zeros(n, np.bool_)
    for k in range(n):
        pos, end = starts[k], ends[k]
        if end - pos < 5 or buf[pos] != 0:
            continue
        sid = (
            (np.int64(buf[pos + 1]) << 24)
            | (np.int64(buf[pos + 2]) << 16)
            | (np.int64(buf[pos + 3]) << 8)
            | np.int64(buf[pos + 4])
        )
        if sid != schema_id:
            continue
        pos += 5
        good = True
        for f in range(kinds.shape[0]):
            kind = kinds[f]
            if kind >= _OPT_STR:
                branch, pos, good = _varint(buf, pos, end)
                if not good or branch < 0 or branch > 1:
                    good = False
                    break
                if branch == 0:
                    out[k, f, 0], out[k, f, 1] = 0, -1
                    continue
            if kind == _OPT_DOUBLE:
                if pos + 8 > end:
                    good = False
                    break
                out[k, f, 0], out[k, f, 1] = pos, 8
                pos += 8
                continue
            value, pos, good = _varint(buf, pos, end)
            if not good:
                break
            if kind in (_STR, _OPT_STR):
                if value < 0 or pos + value > end:
                    good = False
                    break
                out[k, f, 0], out[k, f, 1] = pos, value
                pos += value
            else:
                if (kind == _INT and not -(2**31) <= value < 2**31) or (kind == _ENUM and not 0 <= value < _N_CHANNELS):
                    good = False
                    break
                out[k, f, 0], out[k, f, 1] = value, 0
        ok[k] = good and pos == end
    return ok


def read_transactions(raws: Sequence[bytes | None], schema_id: int) -> list[dict[str, Any] | None]:
    """Per raw value framed with `schema_id` (the Transaction schema as we write it), its record
    as fastavro reads it when it is the plain case; None where it must be read one by one."""
    n = len(raws)
    lengths = np.fromiter((-1 if r is None else len(r) for r in raws), np.int64, n)
    data = b"".join(r for r in raws if r is not None)
    ends = np.cumsum(np.maximum(lengths, 0))
    starts = ends - np.maximum(lengths, 0)
    buf = np.frombuffer(data, np.uint8)
    fields = np.zeros((n, len(_KINDS), 2), np.int64)
    ok = _scan(buf, starts, ends, schema_id, _KINDS, fields) & (lengths >= 0)
    where, size = fields[:, :, 0], fields[:, :, 1]
    doubles = np.full((n, 2), np.nan)
    for j, f in enumerate((10, 11)):
        present = ok & (size[:, f] == 8)
        at = where[present, f]
        doubles[present, j] = buf[at[:, None] + np.arange(8)].copy().view("<f8").ravel() if at.size else []
    # The contract's checks (`validate_transaction`), column-wise: a record that fails one
    # is read again one by one, which names the check.
    time, amount, lat, lon = where[:, 1], where[:, 4], doubles[:, 0], doubles[:, 1]
    with np.errstate(invalid="ignore"):
        lat_ok = (size[:, 10] < 0) | (np.isfinite(lat) & (np.abs(lat) <= 90.0))
        lon_ok = (size[:, 11] < 0) | (np.isfinite(lon) & (np.abs(lon) <= 180.0))
    ok &= (size[:, 0] > 0) & (size[:, 2] > 0) & (size[:, 3] > 0) & (amount >= 0) & (amount <= MAX_AMOUNT)
    ok &= (time >= MIN_EVENT_TIME_MS) & (time <= MAX_EVENT_TIME_MS) & lat_ok & lon_ok
    return _records(data, ok, where.tolist(), size.tolist(), doubles.tolist())


def _records(
    data: bytes, ok: np.ndarray, where: list[list[int]], size: list[list[int]], doubles: list[list[float]]
) -> list[dict[str, Any] | None]:
    out: list[dict[str, Any] | None] = []
    for k, good in enumerate(ok.tolist()):
        if not good:
            out.append(None)
            continue
        at, n = where[k], size[k]
        try:
            record = {
                "transaction_id": data[at[0] : at[0] + n[0]].decode(),
                "event_time": at[1],
                "customer_id": data[at[2] : at[2] + n[2]].decode(),
                "terminal_id": data[at[3] : at[3] + n[3]].decode(),
                "amount": at[4],
                "currency": data[at[5] : at[5] + n[5]].decode(),
                "channel": CHANNELS[at[6]],
                "mcc": at[7],
                "device_id": None if n[8] < 0 else data[at[8] : at[8] + n[8]].decode(),
                "ip": None if n[9] < 0 else data[at[9] : at[9] + n[9]].decode(),
                "latitude": None if n[10] < 0 else doubles[k][0],
                "longitude": None if n[11] < 0 else doubles[k][1],
                "country": None if n[12] < 0 else data[at[12] : at[12] + n[12]].decode(),
            }
        except UnicodeDecodeError:
            out.append(None)
            continue
        out.append(record)
    return out


def warm_up() -> None:
    """Compile (or load from the cache) before the first batch."""
    read_transactions([b"\x00\x00\x00\x00\x00", None], 0)
