"""Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary body.

Decoding a batch never raises for a bad record: it returns the good records and
the failures side by side (errors as values), each failure carrying the raw bytes
and a reason so the DLQ can keep them untouched.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Message
from fastavro import schemaless_reader, schemaless_writer

import schemas
from stream.errors import DecodeError, PoisonError, ValidationError
from stream.kafka import reader
from stream.kafka.columns import BufferColumns, DecisionColumns
from stream.kafka.reader import validate_transaction
from stream.kafka.writer import writer_for
from stream.records import BufferRecord, Decision, Failure, Source

MAGIC = 0
HEADER = struct.Struct(">bI")


class SchemaIds(Protocol):
    """Where schema ids come from: the bundled fixed ids or a Schema Registry."""

    def id_for(self, name: str) -> int:
        """The id to frame records of schema `name` with."""
        ...

    def writer(self, schema_id: int, name: str) -> dict[str, Any]:
        """The parsed schema a record framed with `schema_id` was written with, when it can
        be read as a `name` record; DecodeError (without the bytes) with the reason otherwise."""
        ...


class BundledIds:
    """The fixed ids shipped with `schemas/`, earlier versions included."""

    def __init__(self) -> None:
        self._by_id = {schemas.fixed_id(name): name for name in schemas.BUNDLED}
        self._by_id |= {schema_id: name for schema_id, (name, _) in schemas.EARLIER.items()}

    def id_for(self, name: str) -> int:
        return schemas.fixed_id(name)

    def writer(self, schema_id: int, name: str) -> dict[str, Any]:
        found = self._by_id.get(schema_id)
        if found is None:
            raise DecodeError(f"unknown schema id {schema_id}")
        if found != name:
            raise DecodeError(f"schema id {schema_id} is {found}, expected {name}")
        if schema_id in schemas.EARLIER:
            return schemas.earlier_wire(schema_id)
        return schemas.wire(name)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A record that decoded and validated, with its bytes (for a dead letter after later checks)."""

    value: dict[str, Any]
    source: Source
    raw: bytes | None


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """The outcome of decoding one micro-batch."""

    oks: list[Decoded]
    errs: list[Failure]


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix an Avro body with the Confluent header."""
    return HEADER.pack(MAGIC, schema_id) + body


def unframe(raw: bytes | None) -> tuple[int, bytes]:
    """Split a framed record into (schema id, body); DecodeError when it is not framed."""
    if raw is None:
        raise DecodeError("null value (tombstone) where a record was expected", raw)
    if len(raw) < HEADER.size:
        raise DecodeError(f"{len(raw)} bytes is shorter than the 5-byte Confluent header", raw)
    magic, schema_id = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise DecodeError(f"unknown magic byte {magic} (expected {MAGIC})", raw)
    return schema_id, raw[HEADER.size :]


_VALIDATORS = {"Transaction": validate_transaction}


class Codec:
    """Encodes and decodes fraudstream records in the Confluent wire format."""

    def __init__(self, ids: SchemaIds | None = None) -> None:
        self._ids: SchemaIds = ids or BundledIds()

    @staticmethod
    def warm_up() -> None:
        """Compile (or load from the cache) the batch reader of Transactions before the first batch."""
        reader.warm_up()

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Frame and Avro-encode `record` with schema `name` (by the writer compiled from the
        schema: `stream.kafka.writer`, the same bytes as fastavro's)."""
        compiled = writer_for(name)
        if compiled is not None:
            return frame(self._ids.id_for(name), compiled.write(record))
        buf = io.BytesIO()
        schemaless_writer(buf, schemas.wire(name), record)
        return frame(self._ids.id_for(name), buf.getvalue())

    def encode_decision(self, decision: Decision) -> bytes:
        return self.encode("Decision", decision.as_avro())

    def encode_decisions(self, columns: DecisionColumns) -> list[bytes]:
        """Each row's Decision, framed: what `encode_decision` writes for it, in one pass."""
        head = frame(self._ids.id_for("Decision"), b"")
        return [head + body for body in columns.write()]

    def encode_buffers(self, columns: BufferColumns) -> list[bytes]:
        """Each row's ScoredTransaction, framed: what `encode_buffer` writes for it, in one pass."""
        head = frame(self._ids.id_for("ScoredTransaction"), b"")
        return [head + body for body in columns.write()]

    def encode_buffer(self, record: BufferRecord) -> bytes:
        return self.encode("ScoredTransaction", record.as_avro())

    def decode_decision(self, raw: bytes | None) -> Decision:
        return Decision.from_avro(self.decode("Decision", raw))

    def decode_buffer(self, messages: Iterable[Message]) -> tuple[list[tuple[BufferRecord, Source]], list[Failure]]:
        """Buffer records of a consumed batch, typed, and the failures."""
        batch = self.decode_messages("ScoredTransaction", messages)
        return [(BufferRecord.from_avro(d.value), d.source) for d in batch.oks], batch.errs

    def decode(self, name: str, raw: bytes | None) -> dict[str, Any]:
        """Decode one framed record of schema `name`; PoisonError when unusable."""
        schema_id, body = unframe(raw)
        try:
            writer = self._ids.writer(schema_id, name)
        except DecodeError as exc:
            raise DecodeError(exc.reason, raw) from None
        reader = schemas.wire(name)
        stream = io.BytesIO(body)
        try:
            # A writer's schema other than ours (a producer that evolved it) is resolved
            # against ours by Avro's rules: an added field is skipped, a removed one takes
            # our default; a record the rules cannot read is a dead letter with the reason.
            value = schemaless_reader(stream, writer, None if writer is reader else reader, return_record_name=False)
        except Exception as exc:
            raise DecodeError(f"Avro body unreadable: {type(exc).__name__}: {exc}", raw) from exc
        if not isinstance(value, dict):
            raise DecodeError("Avro body is not a record", raw)
        if stream.tell() != len(body):
            raise DecodeError(f"{len(body) - stream.tell()} trailing bytes after the Avro record", raw)
        validator = _VALIDATORS.get(name)
        if validator is not None:
            try:
                validator(value)
            except PoisonError as exc:
                raise ValidationError(exc.reason, raw) from exc
        return value

    def decode_messages(self, name: str, messages: Iterable[Message]) -> DecodedBatch:
        """Decode a consumed batch into good records and failures; never raises per record."""
        return self._decode_all(name, ((m.value(), source_of(m)) for m in messages))

    def decode_values(self, name: str, raws: Sequence[bytes | None]) -> DecodedBatch:
        """Decode bare values (no Kafka metadata); used by tools and property tests."""
        return self._decode_all(name, ((raw, Source("", -1, i, 0, None)) for i, raw in enumerate(raws)))

    def _decode_all(self, name: str, items: Iterable[tuple[bytes | None, Source]]) -> DecodedBatch:
        pairs = list(items)
        read = self._read_batch(name, [raw for raw, _ in pairs])
        oks: list[Decoded] = []
        errs: list[Failure] = []
        for (raw, source), value in zip(pairs, read, strict=True):
            if value is not None:
                oks.append(Decoded(value, source, raw))
                continue
            try:
                oks.append(Decoded(self.decode(name, raw), source, raw))
            except PoisonError as exc:
                errs.append(Failure(raw, type(exc), exc.reason, source))
        return DecodedBatch(oks, errs)

    def _read_batch(self, name: str, raws: list[bytes | None]) -> list[dict[str, Any] | None]:
        """Transactions framed with our own schema's id, read in one compiled pass
        (`stream.kafka.reader`); None for every other record, which `decode` reads. A batch
        of fewer than `reader.BATCH_MIN` records is read one by one: faster there."""
        if name != "Transaction" or len(raws) < reader.BATCH_MIN:
            return [None] * len(raws)
        schema_id = self._ids.id_for(name)
        try:
            plain = self._ids.writer(schema_id, name) is schemas.wire(name)
        except DecodeError:
            plain = False
        return reader.read_transactions(raws, schema_id) if plain else [None] * len(raws)


def source_of(msg: Message) -> Source:
    """Provenance of a consumed message."""
    _, ts = msg.timestamp()
    partition, offset = msg.partition(), msg.offset()
    return Source(
        topic=msg.topic() or "",
        partition=-1 if partition is None else partition,
        offset=-1 if offset is None else offset,
        timestamp_ms=ts,
        key=_key_bytes(msg.key()),
    )


def _key_bytes(key: str | bytes | None) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    return key.encode()
