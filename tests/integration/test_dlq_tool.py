"""`fraudstream dlq list | show | redrive` against the real broker."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from stream.cli import app
from stream.config import load_settings
from stream.deadletter import dead_letter
from stream.errors import DecodeError, ValidationError
from stream.kafka.topics import ensure_topics
from stream.records import Failure, Source
from stream.testing import LocalInfra

pytestmark = pytest.mark.integration


def test_list_show_and_redrive(infra: LocalInfra, uid: str) -> None:
    topics = {k: f"{k}-{uid}" for k in ("transactions", "ambiguous", "decisions", "labels", "dlq", "shadow")}
    env = {"FRAUDSTREAM_KAFKA_BOOTSTRAP": infra.bootstrap,
           "FRAUDSTREAM_KAFKA__TOPICS": "{" + ", ".join(f"{k}: {v}" for k, v in topics.items()) + "}"}  # fmt: skip
    kafka = load_settings(environ=env).kafka
    ensure_topics(kafka, list(topics.values()), partitions=1)
    producer = Producer(kafka.producer_config(None))
    for i, (err, raw) in enumerate([(DecodeError, b"\xff\x00junk"), (ValidationError, b"\x00\x00\x00\x03\xe9bad")]):
        rec = dead_letter(
            kafka.topics.dlq, Failure(raw, err, f"reason {i}", Source(topics["transactions"], 0, 40 + i, 1, b"k%d" % i)), "scorer"
        )
        topic, key, value, headers = rec
        producer.produce(topic, value=value, key=key, headers=cast(Any, headers))
    producer.flush(10)

    runner = CliRunner()
    listed = runner.invoke(app, ["dlq", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "2 record(s)" in listed.output and "DecodeError" in listed.output
    shown = runner.invoke(app, ["dlq", "show", "0:1"], env=env)
    assert "error.class: ValidationError" in shown.output and "source.offset: 41" in shown.output

    target = f"redriven-{uid}"
    # Safety rails: no refs and no --all is refused; a target topic that does not exist is
    # refused before anything is sent, and not created; a dry run sends nothing.
    bare = runner.invoke(app, ["dlq", "redrive"], env=env)
    assert bare.exit_code == 1 and "--all" in bare.output
    typo = runner.invoke(app, ["dlq", "redrive", "--all", "--to-topic", target], env=env)
    assert typo.exit_code == 1 and f"target topic {target} does not exist" in typo.output, typo.output
    assert target not in AdminClient(kafka.admin_config()).list_topics(timeout=10).topics
    dry = runner.invoke(app, ["dlq", "redrive", "0:0", "0:1", "--dry-run", "--to-topic", target], env=env)
    assert dry.exit_code == 0 and "would re-drive 2 record(s)" in dry.output and f"0:1 ValidationError -> {target}" in dry.output
    absent = runner.invoke(app, ["dlq", "redrive", "0:7", "--to-topic", target], env=env)
    assert absent.exit_code == 1 and "no DLQ record 0:7" in absent.output
    ensure_topics(kafka, [target], partitions=1)
    result = runner.invoke(app, ["dlq", "redrive", "--all", "--error", "DecodeError", "--to-topic", target], env=env)
    assert "re-drove 1 record(s)" in result.output, result.output
    consumer = Consumer(kafka.consumer_config(f"check-{uid}"))
    consumer.subscribe([target])
    got = []
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        got = [m for m in consumer.consume(10, 0.5) if m.error() is None]
    consumer.close()
    assert [(m.key(), m.value()) for m in got] == [(b"k0", b"\xff\x00junk")]
    assert dict(cast(Any, got[0].headers()))["dlq.redriven_from"] == f"{kafka.topics.dlq}/0:0".encode()
