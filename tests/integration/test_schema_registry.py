"""Schema ids and writer schemas from a Confluent-compatible registry, through the real broker.

No Confluent-compatible registry could be run here (Confluent's and Karapace are not on the
package registries this machine reaches; Apicurio's app on Maven Central needs a Quarkus
build), so the registry is a loopback stand-in serving the endpoints of the Confluent REST API
that confluent_kafka.schema_registry calls — over HTTPS with the local CA, behind basic auth.
"""

from __future__ import annotations

import base64
import io
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from confluent_kafka import Consumer, Message, Producer
from fastavro import parse_schema, schemaless_writer

import schemas
from stream.config import KafkaSettings, load_settings
from stream.kafka.codec import HEADER, frame
from stream.kafka.schema_registry import codec_for
from stream.kafka.topics import ensure_topics
from stream.testing import LocalInfra, sample_transaction, secured_infra

pytestmark = pytest.mark.integration

USER, PASSWORD = "fraudstream", "registry-pw-5521"


class Registry:
    """POST /subjects/{subject}/versions and GET /schemas/ids/{id}, as a registry answers them."""

    def __init__(self, tls_dir: Path) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests = 0
        registry = self
        token = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def _authorized(self) -> bool:
                registry.requests += 1
                if self.headers.get("Authorization") == token:
                    return True
                self._json(401, {"error_code": 40101, "message": "Unauthorized"})
                return False

            def do_POST(self) -> None:
                if not self._authorized():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                subject = urlsplit(self.path).path.split("/")[2]
                self._json(200, {"id": registry.register(subject, body["schema"])})

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                sid = int(urlsplit(self.path).path.rsplit("/", 1)[1])
                if sid in registry.schemas:
                    self._json(200, {"schema": registry.schemas[sid]})
                else:
                    self._json(404, {"error_code": 40403, "message": "Schema not found"})

            def _json(self, code: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_dir / "server.pem", tls_dir / "server.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def register(self, subject: str, schema: str) -> int:
        sid = next((i for i, s in self.schemas.items() if s == schema), 100 + len(self.schemas))
        self.schemas[sid] = schema
        self.subjects.setdefault(subject, []).append(sid)
        return sid


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # The local CA and server certificate of deploy/local/tls.sh (a TLS Redis comes with them).
    with secured_infra(tmp_path_factory.mktemp("tls") / "run", "redis") as secured:
        yield secured.tls_dir


@pytest.fixture
def registry(tls_dir: Path) -> Iterator[Registry]:
    r = Registry(tls_dir)
    yield r
    r.server.shutdown()
    r.server.server_close()


def _kafka(infra: LocalInfra, uid: str, registry: Registry, tls_dir: Path, password: str = PASSWORD) -> KafkaSettings:
    env = {
        "FRAUDSTREAM_KAFKA_BOOTSTRAP": infra.bootstrap,
        "FRAUDSTREAM_KAFKA__SCHEMA_REGISTRY_URL": registry.url,
        "FRAUDSTREAM_KAFKA__SCHEMA_REGISTRY_USERNAME": USER,
        "FRAUDSTREAM_KAFKA__SCHEMA_REGISTRY_PASSWORD": password,
        "FRAUDSTREAM_KAFKA__SCHEMA_REGISTRY_CA_LOCATION": str(tls_dir / "ca.pem"),
        "FRAUDSTREAM_KAFKA__TOPICS": f"{{transactions: tx-{uid}}}",
    }
    return load_settings(environ=env).kafka


def _evolved(change: Any) -> dict[str, Any]:
    raw = schemas.schema_json("Transaction")
    raw["fields"] = change(raw["fields"])
    return raw


def _written(registry: Registry, subject: str, writer: dict[str, Any], record: dict[str, Any]) -> bytes:
    """A record as an upstream producer with its own schema writes it."""
    sid = registry.register(subject, json.dumps(writer))
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(writer), record)
    return frame(sid, buf.getvalue())


def _through_kafka(kafka: KafkaSettings, values: list[bytes]) -> list[Message]:
    ensure_topics(kafka, [kafka.topics.transactions], partitions=1)
    producer = Producer(kafka.producer_config(None))
    for v in values:
        producer.produce(kafka.topics.transactions, v)
    assert producer.flush(10) == 0
    consumer = Consumer(kafka.consumer_config(f"g-{time.time_ns()}"))
    consumer.subscribe([kafka.topics.transactions])
    msgs: list[Message] = []
    deadline = time.monotonic() + 20
    while len(msgs) < len(values) and time.monotonic() < deadline:
        msgs += [m for m in consumer.consume(10, 0.5) if m.error() is None]
    consumer.close()
    return msgs


def test_records_of_evolved_writer_schemas_decode_and_incompatible_ones_are_refused_with_the_reason(
    infra: LocalInfra, uid: str, registry: Registry, tls_dir: Path
) -> None:
    kafka = _kafka(infra, uid, registry, tls_dir)
    subject = f"{kafka.topics.transactions}-value"
    tx = sample_transaction(1, device_id="d-1")
    ours = codec_for(kafka).encode("Transaction", tx)
    _, sid = HEADER.unpack_from(ours)
    assert registry.subjects[subject] == [sid] and sid != 1001  # the registry's id, not the bundled one

    added = _evolved(lambda f: [*f, {"name": "loyalty_tier", "type": ["null", "string"], "default": None}])
    dropped = _evolved(lambda f: [x for x in f if x["name"] != "device_id"])  # ours defaults it to null
    no_amount = _evolved(lambda f: [x for x in f if x["name"] != "amount"])  # ours has no default
    retyped = _evolved(lambda f: [{**x, "type": "string"} if x["name"] == "mcc" else x for x in f])
    label = schemas.schema_json("Label")
    values = [
        ours,
        _written(registry, subject, added, {**tx, "loyalty_tier": "gold"}),
        _written(registry, subject, dropped, {k: v for k, v in tx.items() if k != "device_id"}),
        _written(registry, subject, no_amount, {k: v for k, v in tx.items() if k != "amount"}),
        _written(registry, subject, retyped, {**tx, "mcc": "5411"}),
        _written(
            registry,
            "labels-value",
            label,
            {
                "transaction_id": "x",
                "customer_id": "c",
                "terminal_id": "t",
                "event_time": tx["event_time"],
                "label_time": tx["event_time"],
                "is_fraud": True,
            },
        ),
        b"\x00\x00\x00\x03\x09" + ours[5:],  # id 777: registered nowhere
    ]
    msgs = _through_kafka(kafka, values)
    # A fresh process (empty caches) resolves every id through the registry.
    batch = codec_for(kafka).decode_messages("Transaction", msgs)
    assert [d.value for d in batch.oks] == [tx, tx, {**tx, "device_id": None}]
    reasons = [f.reason for f in batch.errs]
    assert len(reasons) == 4, reasons
    assert "amount" in reasons[0]
    assert "Avro body unreadable" in reasons[1]
    assert "is io.fraudstream.Label, expected io.fraudstream.Transaction" in reasons[2]
    assert reasons[3] == "unknown schema id 777"
    assert all(f.raw == v for f, v in zip(batch.errs, values[3:], strict=True))  # kept whole for the DLQ


def test_a_wrong_registry_password_is_a_broker_error_that_does_not_show_it(
    infra: LocalInfra, uid: str, registry: Registry, tls_dir: Path
) -> None:
    from stream.errors import BrokerError

    kafka = _kafka(infra, uid, registry, tls_dir, "not-the-password-7788")
    with pytest.raises(BrokerError, match="refused Transaction") as err:
        codec_for(kafka).encode("Transaction", sample_transaction(1))
    assert "7788" not in str(err.value)
