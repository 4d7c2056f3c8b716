"""Avro bodies of the pipeline's outputs, with their float arrays packed by numpy.

A Decision or ScoredTransaction carries the feature vector and the card sequence: about 190
floats, which fastavro writes one at a time. An Avro record is its fields' encodings in
order, so the writer cuts the schema at each `array<float>` field: a run of plain strings and
longs is written here, any other run goes through fastavro as a record of its own, and each
float array is written here too — the item count (a zigzag varint), the items as
little-endian float32, the closing 0, as fastavro writes a non-empty array in one block (an
empty one is the 0 alone). The bytes are the same as fastavro's for the whole schema; the
unit tests check it, property-based included.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
from fastavro import parse_schema, schemaless_writer

import schemas


def _is_float_array(t: Any) -> bool:
    return isinstance(t, dict) and t.get("type") == "array" and t.get("items") == "float"


def varint(n: int) -> bytes:
    """Avro's long: zigzag, then 7 bits a byte, least significant first."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def float_array(values: Sequence[float] | np.ndarray) -> bytes:
    """An Avro array<float>, as fastavro writes it (a value beyond float32's range: inf, as its C cast)."""
    n = len(values)
    if not n:
        return b"\x00"
    try:
        items = struct.pack(f"<{n}f", *values)
    except OverflowError:
        with np.errstate(over="ignore"):
            items = np.asarray(values, dtype="<f4").tobytes()
    return varint(n) + items + b"\x00"


_PLAIN = {"string", "long", "int"}


def _plain_run(fields: list[dict[str, Any]]) -> bool:
    return all(isinstance(f["type"], str) and f["type"] in _PLAIN for f in fields)


def _write_plain(buf: io.BytesIO, fields: Sequence[tuple[str, str]], record: Mapping[str, Any]) -> None:
    for name, kind in fields:
        value = record[name]
        if kind == "string":
            raw = value.encode()
            buf.write(varint(len(raw)))
            buf.write(raw)
        else:
            buf.write(varint(int(value)))


class SegmentedWriter:
    """Writes records of one schema: fastavro for the runs of fields, numpy for float arrays."""

    def __init__(self, name: str) -> None:
        raw = schemas.plain_schema(name)
        named: dict[str, Any] = {}
        if name == "ScoredTransaction":
            parse_schema(schemas.plain_schema("Transaction"), named_schemas=named)
        self.segments: list[tuple[str, Any]] = []
        run: list[dict[str, Any]] = []

        def close_run() -> None:
            if run and _plain_run(run):
                self.segments.append(("plain", [(f["name"], f["type"]) for f in run]))
                run.clear()
            elif run:
                sub = {"type": "record", "name": f"{raw['name']}_part{len(self.segments)}", "namespace": raw.get("namespace"),
                       "fields": list(run)}  # fmt: skip
                self.segments.append(("avro", parse_schema(sub, named_schemas=named)))
                run.clear()

        for f in raw["fields"]:
            if _is_float_array(f["type"]):
                close_run()
                self.segments.append(("floats", f["name"]))
            else:
                run.append(f)
        close_run()

    def write(self, record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        for kind, what in self.segments:
            if kind == "avro":
                schemaless_writer(buf, what, record)
            elif kind == "plain":
                _write_plain(buf, what, record)
            else:
                buf.write(float_array(record[what]))
        return buf.getvalue()


@cache
def writer_for(name: str) -> SegmentedWriter | None:
    """The segmented writer of a schema with float arrays; None for one without (fastavro alone)."""
    if not any(_is_float_array(f["type"]) for f in schemas.plain_schema(name)["fields"]):
        return None
    return SegmentedWriter(name)
