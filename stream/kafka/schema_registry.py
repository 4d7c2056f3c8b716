"""Schema ids from a Confluent-compatible Schema Registry.

On first use each bundled schema is registered under the topic's value subject
(`<topic>-value`, TopicNameStrategy) and the returned id is used for framing;
decoding looks unknown ids up (`GET /schemas/ids/{id}`) and accepts them when the
registry's schema is the bundled one. Answers are cached: one HTTP round trip per
schema per process, never per record.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import schemas
from stream.config import KafkaSettings
from stream.errors import BrokerError, ConfigError
from stream.kafka.codec import Codec

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryIds:
    """SchemaIds backed by a registry; `subjects` maps schema name -> subject."""

    def __init__(self, url: str, subjects: dict[str, str], timeout_s: float = 5.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"config key 'kafka.schema_registry_url': not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self.subjects = subjects
        self.timeout_s = timeout_s
        self._ids: dict[str, int] = {}
        self._names: dict[int, str | None] = {}

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - the URL scheme is checked in __init__
            self.url + path, data=data, method=method, headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise BrokerError(f"schema registry {method} {path}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise BrokerError(f"schema registry unreachable: {exc}") from exc

    def id_for(self, name: str) -> int:
        if name not in self._ids:
            subject = self.subjects.get(name, f"fraudstream-{name}-value")
            answer = self._call("POST", f"/subjects/{subject}/versions", {"schema": json.dumps(schemas.expanded(name))})
            if not answer or "id" not in answer:
                raise BrokerError(f"schema registry did not return an id for {subject}")
            self._ids[name] = int(answer["id"])
            self._names[int(answer["id"])] = name
        return self._ids[name]

    def name_for(self, schema_id: int) -> str | None:
        if schema_id not in self._names:
            answer = self._call("GET", f"/schemas/ids/{schema_id}")
            found = None
            if answer and "schema" in answer:
                registered = json.loads(answer["schema"])
                found = next((n for n in schemas.BUNDLED if _same(schemas.expanded(n), registered)), None)
            self._names[schema_id] = found
        return self._names[schema_id]


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


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
    return Codec(RegistryIds(kafka.schema_registry_url, subjects))
