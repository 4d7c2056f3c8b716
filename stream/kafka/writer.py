"""Avro bodies of the pipeline's records, written by a writer compiled from the schema.

fastavro walks the schema for every record it writes, and writes an `array<float>` (the
feature vector and the card sequence of a Decision or ScoredTransaction: about 190 floats)
one item at a time. The writer here walks the schema once: each field type becomes a small
function that appends its encoding to a list, a record the concatenation of its fields'
(Avro's rule), and a float array is packed in one call — the item count (a zigzag varint),
the items as little-endian float32, the closing 0, as fastavro writes a non-empty array in
one block (an empty one is the 0 alone); a value beyond float32's range becomes inf, as
fastavro's C cast makes it. A missing field takes its default, as fastavro's does.

It covers what the bundled schemas use (primitives, enums, records, arrays, unions of null
and one type); a schema with anything else is left to fastavro (`writer_for` gives None).
The bytes are fastavro's for every bundled schema; the unit tests check it, property-based.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import numpy as np

import schemas

Write = Callable[[list[bytes], Any], None]

_SMALL = [bytes([z]) for z in range(0x80)]
_FLOAT, _DOUBLE = struct.Struct("<f"), struct.Struct("<d")
_NULL, _SECOND = b"\x00", b"\x02"  # a union's branch index 0 and 1 (zigzag)


class Unsupported(ValueError):
    """A schema shape this writer does not compile (fastavro writes it instead)."""


def varint(n: int) -> bytes:
    """Avro's long: zigzag, then 7 bits a byte, least significant first."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return _SMALL[z]
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def float_bytes(value: float) -> bytes:
    """An Avro float: little-endian float32 (beyond its range: inf, as fastavro's C cast)."""
    try:
        return _FLOAT.pack(value)
    except OverflowError:
        with np.errstate(over="ignore"):
            return np.float32(value).tobytes()


def float_array(values: Sequence[float] | np.ndarray) -> bytes:
    """An Avro array<float>, as fastavro writes it (a value beyond float32's range: inf, as its C cast)."""
    n = len(values)
    if not n:
        return _NULL
    try:
        items = struct.pack(f"<{n}f", *values)
    except OverflowError:
        with np.errstate(over="ignore"):
            items = np.asarray(values, dtype="<f4").tobytes()
    return varint(n) + items + _NULL


_LANES = np.arange(10, dtype=np.uint64)
_BOUNDS = np.uint64(1) << (7 * _LANES[1:])  # a zigzag value at or above bound k takes k + 2 bytes


def varints(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Every value's zigzag varint at once (numpy): their bytes back to back, and each one's length."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    z = ((v << 1) ^ (v >> 63)).view(np.uint64)
    if (z < 0x80).all():
        return z.astype(np.uint8).tobytes(), np.ones(len(z), dtype=np.int64)
    if (z < 0x4000).all():  # leaf indices and the like: one or two bytes each
        pair = np.empty((len(z), 2), dtype=np.uint8)
        two = z >= 0x80
        pair[:, 0] = (z & np.uint64(0x7F)) | (two.astype(np.uint64) << np.uint64(7))
        pair[:, 1] = z >> np.uint64(7)
        return pair[np.stack((np.ones(len(z), dtype=bool), two), axis=1)].tobytes(), 1 + two.astype(np.int64)
    length = (1 + (z[:, None] >= _BOUNDS).sum(axis=1)).astype(np.uint64)
    groups = ((z[:, None] >> (np.uint64(7) * _LANES)) & np.uint64(0x7F)).astype(np.uint8)
    groups[_LANES[None, :] + np.uint64(1) < length[:, None]] |= 0x80
    return groups[_LANES[None, :] < length[:, None]].tobytes(), length.astype(np.int64)


def int_array(values: Sequence[int] | np.ndarray) -> bytes:
    """An Avro array of ints or longs in one block, every varint at once (numpy)."""
    if not len(values):
        return _NULL
    return varint(len(values)) + varints(np.asarray(values))[0] + _NULL


def int_rows(rows: np.ndarray) -> list[bytes]:
    """Each row of an (n, k) int matrix as an Avro int array: `int_array` of every row, in one pass."""
    n, k = rows.shape
    if k == 0:
        return [_NULL] * n
    body, lengths = varints(rows)
    ends = np.cumsum(lengths.reshape(n, k).sum(axis=1)).tolist()
    head = varint(k)
    return [head + body[start:end] + _NULL for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def string_bytes(value: str) -> bytes:
    """An Avro string: its UTF-8 length (a varint), then the bytes."""
    raw = value.encode()
    return varint(len(raw)) + raw


_PRIMITIVES: dict[str, Write] = {
    "null": lambda out, value: None,
    "boolean": lambda out, value: out.append(b"\x01" if value else _NULL),
    "int": lambda out, value: out.append(varint(int(value))),
    "long": lambda out, value: out.append(varint(int(value))),
    "float": lambda out, value: out.append(float_bytes(float(value))),
    "double": lambda out, value: out.append(_DOUBLE.pack(float(value))),
    "string": lambda out, value: out.append(string_bytes(value)),
}


def _name(t: dict[str, Any], named: dict[str, Write], write: Write) -> Write:
    named[t["name"]] = write
    if "namespace" in t:
        named[f"{t['namespace']}.{t['name']}"] = write
    return write


def _record(t: dict[str, Any], named: dict[str, Write]) -> Write:
    fields: list[tuple[str, Write, Any]] = []

    def write(out: list[bytes], record: Any) -> None:
        for name, w, default in fields:
            w(out, record.get(name, default))

    _name(t, named, write)  # a later field may refer to it by name
    fields.extend((f["name"], compile_type(f["type"], named), f.get("default")) for f in t["fields"])
    return write


def _array(items: Any, named: dict[str, Write]) -> Write:
    if items == "float":
        return lambda out, value: out.append(float_array(value))
    item = compile_type(items, named)

    def write(out: list[bytes], values: Sequence[Any]) -> None:
        if values:
            out.append(varint(len(values)))
            for v in values:
                item(out, v)
        out.append(_NULL)

    def write_ints(out: list[bytes], values: Sequence[int]) -> None:
        try:
            out.append(int_array(values))
        except OverflowError:  # a Python int beyond 64 bits: fastavro's way, one by one
            write(out, values)

    return write_ints if items in ("int", "long") else write


def _nullable(branches: list[Any], named: dict[str, Write]) -> Write:
    if len(branches) != 2 or "null" not in branches or branches[0] == branches[1]:
        raise Unsupported(f"union {branches}")
    null_first = branches[0] == "null"
    inner = compile_type(branches[1] if null_first else branches[0], named)
    none_tag, value_tag = (_NULL, _SECOND) if null_first else (_SECOND, _NULL)

    def write(out: list[bytes], value: Any) -> None:
        if value is None:
            out.append(none_tag)
        else:
            out.append(value_tag)
            inner(out, value)

    return write


def compile_type(t: Any, named: dict[str, Write]) -> Write:
    """The writer of one Avro type (JSON form, logical types dropped); Unsupported otherwise."""
    if isinstance(t, str):
        found = _PRIMITIVES.get(t) or named.get(t) or named.get(t.rsplit(".", 1)[-1])
        if found is None:
            raise Unsupported(f"type {t}")
        return found
    if isinstance(t, list):
        return _nullable(t, named)
    kind = t.get("type")
    if "logicalType" in t:
        raise Unsupported(f"logical type {t['logicalType']}")
    if kind == "record":
        return _record(t, named)
    if kind == "enum":
        index = {s: varint(i) for i, s in enumerate(t["symbols"])}
        return _name(t, named, lambda out, v: out.append(index[v]))
    if kind == "array":
        return _array(t["items"], named)
    if isinstance(kind, str) and kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    raise Unsupported(f"type {t}")


class CompiledWriter:
    """Writes records of one bundled schema; bytes as fastavro's."""

    def __init__(self, name: str) -> None:
        named: dict[str, Write] = {}
        if name == "ScoredTransaction":
            compile_type(schemas.plain_schema("Transaction"), named)
        self._write = compile_type(schemas.plain_schema(name), named)

    def write(self, record: Any) -> bytes:
        out: list[bytes] = []
        self._write(out, record)
        return b"".join(out)


@cache
def writer_for(name: str) -> CompiledWriter | None:
    """The compiled writer of a bundled schema; None for one it does not cover (fastavro alone)."""
    try:
        return CompiledWriter(name)
    except Unsupported:
        return None
