"""Schema ids from a Confluent-compatible Schema Registry (confluent_kafka.schema_registry:
basic auth and TLS from `kafka.schema_registry_*`).

On first use each bundled schema is registered under the topic's value subject
(`<topic>-value`, TopicNameStrategy) and the returned id frames what we write. A record
framed with another id is read with its writer's schema, fetched once per id and resolved
against ours by Avro's rules: a producer that added an optional field or dropped a field we
give a default still decodes; a schema of another record, an id the registry does not know
or a record the rules cannot resolve is a dead letter naming the reason. An unreachable
registry is a BrokerError: the batch is retried, never dead-lettered.
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

import schemas
from stream.config import KafkaSettings
from stream.errors import BrokerError, DecodeError
from stream.kafka.codec import Codec

# Ids a registry did not know, or whose schema we cannot read, remembered so that a flood of
# hostile bytes costs the registry one request per id; cleared when it grows past this.
MAX_REFUSED_IDS = 10_000


def _fullname(raw: dict[str, Any]) -> str:
    name = str(raw.get("name", "?"))
    return name if "." in name or not raw.get("namespace") else f"{raw['namespace']}.{name}"


class RegistryIds:
    """SchemaIds backed by a registry client; `subjects` maps schema name -> subject."""

    def __init__(self, client: SchemaRegistryClient, subjects: dict[str, str]) -> None:
        self.client = client
        self.subjects = subjects
        self._ids: dict[str, int] = {}
        self._writers: dict[int, dict[str, Any]] = {}
        self._refused: dict[int, str] = {}

    def id_for(self, name: str) -> int:
        if name not in self._ids:
            subject = self.subjects.get(name, f"fraudstream-{name}-value")
            try:
                self._ids[name] = self.client.register_schema(subject, Schema(json.dumps(schemas.expanded(name)), "AVRO"))
            except SchemaRegistryError as exc:
                raise BrokerError(f"schema registry refused {name} under {subject}: {exc}") from exc
            except Exception as exc:  # httpx transport errors: the registry is unreachable
                raise BrokerError(f"schema registry unreachable: {type(exc).__name__}: {exc}") from exc
        return self._ids[name]

    def writer(self, schema_id: int, name: str) -> dict[str, Any]:
        if schema_id == self._ids.get(name):
            return schemas.wire(name)
        if schema_id in self._refused:
            raise DecodeError(self._refused[schema_id])
        if schema_id not in self._writers:
            try:
                found = self.client.get_schema(schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    raise self._refuse(schema_id, f"unknown schema id {schema_id}") from None
                raise BrokerError(f"schema registry: schema id {schema_id}: {exc}") from exc
            except Exception as exc:
                raise BrokerError(f"schema registry unreachable: {type(exc).__name__}: {exc}") from exc
            if (found.schema_type or "AVRO") != "AVRO":
                raise self._refuse(schema_id, f"schema id {schema_id} is a {found.schema_type} schema, not Avro")
            raw = json.loads(found.schema_str or "{}")
            self._writers[schema_id] = schemas.wire_of(raw)
        writer = self._writers[schema_id]
        expected = _fullname(schemas.schema_json(name))
        if _fullname(writer) != expected:
            raise DecodeError(f"schema id {schema_id} is {_fullname(writer)}, expected {expected}")
        return writer

    def _refuse(self, schema_id: int, reason: str) -> DecodeError:
        if len(self._refused) >= MAX_REFUSED_IDS:
            self._refused.clear()
        self._refused[schema_id] = reason
        return DecodeError(reason)


def registry_client(kafka: KafkaSettings) -> SchemaRegistryClient:
    """A client for `kafka.schema_registry_url`, with its credentials and CA."""
    conf: dict[str, Any] = {"url": kafka.schema_registry_url, "timeout": 5}
    if kafka.schema_registry_username is not None and kafka.schema_registry_password is not None:
        secret = kafka.schema_registry_password.get_secret_value()
        conf["basic.auth.user.info"] = f"{kafka.schema_registry_username}:{secret}"
    if kafka.schema_registry_ca_location is not None:
        conf["ssl.ca.location"] = str(kafka.schema_registry_ca_location)
    return SchemaRegistryClient(conf)


def codec_for(kafka: KafkaSettings) -> Codec:
    """The codec the settings ask for: registry ids when a registry is configured, else bundled ids."""
    if not kafka.schema_registry_url:
        return Codec()
    t = kafka.topics
    subjects = {
        "Transaction": f"{t.transactions}-value",
        "ScoredTransaction": f"{t.ambiguous}-value",
        "Decision": f"{t.decisions}-value",
        "Label": f"{t.labels}-value",
    }
    return Codec(RegistryIds(registry_client(kafka), subjects))
