"""The Avro contracts of fraudstream and a tiny loader.

Each schema has a fixed id used in the Confluent wire framing when no Schema
Registry is configured. Ids are part of the contract: never reuse or renumber. A
schema that evolves gets a new id; its earlier versions stay in `EARLIER`, read (as
writers' schemas, resolved against the current one) and never written.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema

SCHEMA_DIR = Path(__file__).resolve().parent

#: name -> (file, fixed schema id)
BUNDLED: dict[str, tuple[str, int]] = {
    "Transaction": ("transaction.avsc", 1001),
    "ScoredTransaction": ("scored_transaction.avsc", 1006),
    "Decision": ("decision.avsc", 1007),
    "Label": ("label.avsc", 1004),
}

#: earlier schema id -> (name, file): records already on topics under that id
EARLIER: dict[int, tuple[str, str]] = {
    1002: ("ScoredTransaction", "scored_transaction.v1.avsc"),
    1003: ("Decision", "decision.v1.avsc"),
    1005: ("Decision", "decision.v2.avsc"),
}


def schema_json(name: str) -> dict[str, Any]:
    """The raw JSON of a bundled schema, as published to a registry."""
    file, _ = BUNDLED[name]
    raw: dict[str, Any] = json.loads((SCHEMA_DIR / file).read_text())
    return raw


@cache
def parsed(name: str) -> dict[str, Any]:
    """A fastavro-parsed schema; ScoredTransaction embeds Transaction."""
    named: dict[str, Any] = {}
    if name == "ScoredTransaction":
        parse_schema(schema_json("Transaction"), named_schemas=named)
    result = parse_schema(schema_json(name), named_schemas=named)
    if not isinstance(result, dict):
        raise TypeError(f"schema {name} did not parse to a record")
    return result


@cache
def wire(name: str) -> dict[str, Any]:
    """`parsed(name)` without logical types: the same bytes on the wire, timestamps as
    epoch-millisecond ints (fraudstream's internal form) with no datetime round trip."""
    named: dict[str, Any] = {}
    if name == "ScoredTransaction":
        parse_schema(_plain(schema_json("Transaction")), named_schemas=named)
    result = parse_schema(_plain(schema_json(name)), named_schemas=named)
    if not isinstance(result, dict):
        raise TypeError(f"schema {name} did not parse to a record")
    return result


@cache
def earlier_wire(schema_id: int) -> dict[str, Any]:
    """The `wire` form of an earlier schema version (see `EARLIER`)."""
    name, file = EARLIER[schema_id]
    named: dict[str, Any] = {}
    if name == "ScoredTransaction":
        parse_schema(_plain(schema_json("Transaction")), named_schemas=named)
    result = parse_schema(_plain(json.loads((SCHEMA_DIR / file).read_text())), named_schemas=named)
    if not isinstance(result, dict):
        raise TypeError(f"schema {file} did not parse to a record")
    return result


def wire_of(raw: dict[str, Any]) -> dict[str, Any]:
    """A writer's schema JSON (say, from a registry) parsed as `wire` parses ours: no logical types."""
    result = parse_schema(_plain(raw), named_schemas={})
    if not isinstance(result, dict):
        raise TypeError("the schema did not parse to a record")
    return result


def plain_schema(name: str) -> dict[str, Any]:
    """A bundled schema's JSON without logical types (what `wire` parses)."""
    result: dict[str, Any] = _plain(schema_json(name))
    return result


def _plain(node: Any) -> Any:
    """A schema JSON with every logicalType annotation dropped."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def expanded(name: str) -> dict[str, Any]:
    """The schema with named types it uses inlined: what a registry stores on its own."""
    raw = schema_json(name)
    if name == "ScoredTransaction":
        raw["fields"] = [
            {**f, "type": schema_json("Transaction")} if f["type"] == "io.fraudstream.Transaction" else f for f in raw["fields"]
        ]
    return raw


def fixed_id(name: str) -> int:
    """The bundled schema id of `name`."""
    return BUNDLED[name][1]
