"""Schema ids from a Confluent-compatible registry (a minimal one served on loopback),
through the real broker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka import Consumer, Producer

from stream.config import load_settings
from stream.kafka.codec import HEADER
from stream.kafka.schema_registry import codec_for
from stream.kafka.topics import ensure_topics
from stream.testing import LocalInfra, sample_transaction

pytestmark = pytest.mark.integration


class Registry:
    """The two endpoints of the Confluent Schema Registry API that fraudstream uses."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, int] = {}
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                subject = self.path.split("/")[2]
                existing = next((i for i, s in registry.schemas.items() if s == body["schema"]), None)
                sid = existing or 100 + len(registry.schemas)
                registry.schemas[sid] = body["schema"]
                registry.subjects[subject] = sid
                self._json(200, {"id": sid})

            def do_GET(self) -> None:
                sid = int(self.path.rsplit("/", 1)[1])
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
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def registry() -> Iterator[Registry]:
    r = Registry()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_registry_ids_frame_and_decode_through_kafka(infra: LocalInfra, uid: str, registry: Registry) -> None:
    env = {"FRAUDSTREAM_KAFKA_BOOTSTRAP": infra.bootstrap, "FRAUDSTREAM_KAFKA__SCHEMA_REGISTRY_URL": registry.url,
           "FRAUDSTREAM_KAFKA__TOPICS": f"{{transactions: tx-{uid}}}"}  # fmt: skip
    kafka = load_settings(environ=env).kafka
    ensure_topics(kafka, [kafka.topics.transactions], partitions=1)
    codec = codec_for(kafka)
    raw = codec.encode("Transaction", sample_transaction(1))
    _, sid = HEADER.unpack_from(raw)
    assert sid == registry.subjects[f"tx-{uid}-value"] and sid != 1001  # the registry's id, not the bundled one
    producer = Producer(kafka.producer_config(None))
    producer.produce(kafka.topics.transactions, raw)
    producer.flush(10)
    consumer = Consumer(kafka.consumer_config(f"g-{uid}"))
    consumer.subscribe([kafka.topics.transactions])
    msgs = []
    deadline = time.monotonic() + 20
    while not msgs and time.monotonic() < deadline:
        msgs = [m for m in consumer.consume(10, 0.5) if m.error() is None]
    consumer.close()
    # A fresh process (empty cache) resolves the id through the registry.
    batch = codec_for(kafka).decode_messages("Transaction", msgs)
    assert [d.value for d in batch.oks] == [sample_transaction(1)]
    unknown = codec_for(kafka).decode_values("Transaction", [b"\x00\x00\x00\x03\x09" + raw[5:]])  # id 777
    assert "unknown schema id 777" in unknown.errs[0].reason
