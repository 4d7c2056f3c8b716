"""The codec and Kafka transactions against the real single-node broker."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from stream.cli import app
from stream.config import KafkaSettings
from stream.errors import BrokerError
from stream.kafka.codec import Codec
from stream.kafka.topics import delete_topics, ensure_topics, missing_topics, wait_served
from stream.testing import LocalInfra, free_port, sample_transaction

pytestmark = pytest.mark.integration


def _drain(consumer: Consumer, expected: int, timeout_s: float = 30.0) -> list:
    import time

    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(500, 0.5):
            assert msg.error() is None, msg.error()
            out.append(msg)
    return out


def test_new_topics_take_records_as_soon_as_ensure_topics_returns(infra: LocalInfra, uid: str) -> None:
    # The first record of each fresh partition, from an idempotent producer, must be in the log:
    # produced before the broker served the partition, such records were acknowledged and lost.
    kafka = KafkaSettings(bootstrap=infra.bootstrap)
    topics = [f"fresh-{uid}-{i}" for i in range(3)]
    ensure_topics(kafka, topics, partitions=4)
    producer = Producer(kafka.producer_config(None))
    failed: list[object] = []
    for t in topics:
        for p in range(4):
            producer.produce(t, b"first", partition=p, on_delivery=lambda err, _m: failed.append(err) if err else None)
    assert producer.flush(30) == 0 and failed == []
    consumer = Consumer(kafka.consumer_config(f"g-{uid}"))
    try:
        marks = {(t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10) for t in topics for p in range(4)}
    finally:
        consumer.close()
    assert set(marks.values()) == {(0, 1)}, marks


def test_topics_command_creates_the_pipeline_topics_and_reports_them_served(infra: LocalInfra, uid: str) -> None:
    names = {k: f"{k}-cli-{uid}" for k in ("transactions", "ambiguous", "decisions", "labels", "dlq", "shadow")}
    env = {"FRAUDSTREAM_KAFKA_BOOTSTRAP": infra.bootstrap,
           "FRAUDSTREAM_KAFKA__TOPICS": "{" + ", ".join(f"{k}: {v}" for k, v in names.items()) + "}"}  # fmt: skip
    result = CliRunner().invoke(app, ["topics"], env=env)
    assert result.exit_code == 0, result.output
    assert all(f"{name}: 4 partitions, served" in result.output for name in names.values())
    meta = AdminClient(KafkaSettings(bootstrap=infra.bootstrap).admin_config()).list_topics(timeout=10).topics
    assert all(len(meta[name].partitions) == 4 for name in names.values())


def test_an_unreachable_broker_is_named_in_one_error_that_says_what_to_start() -> None:
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}")
    with pytest.raises(BrokerError, match=f"cannot reach the broker at {kafka.bootstrap} \\(is it running\\? `make up`"):
        ensure_topics(kafka, ["anything"], connect_s=2.0)
    # the real command, output to a pipe: one line, no librdkafka noise before it
    env = {**os.environ, "FRAUDSTREAM_KAFKA__BOOTSTRAP": kafka.bootstrap}
    env.pop("COLUMNS", None)
    done = subprocess.run([sys.executable, "-m", "stream", "replay", "--from", "0", "--to-topic", "x"],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the broker at {kafka.bootstrap}"), lines
    assert "`make up` starts the local one" in lines[0]


def test_deleted_topics_are_gone_and_counted(infra: LocalInfra, uid: str) -> None:
    # A delete whose admin client is dropped before the broker answers is cancelled ("handle is
    # terminating"): the bench once left every phase's topics on the broker that way, unnoticed.
    import time

    kafka = KafkaSettings(bootstrap=infra.bootstrap)
    names = [f"gone-{uid}-{i}" for i in range(3)]
    ensure_topics(kafka, names, partitions=1)
    assert delete_topics(kafka, [*names, f"never-{uid}"]) == 3  # one the broker never had: already gone
    deadline = time.monotonic() + 15
    while missing_topics(kafka, names) != names and time.monotonic() < deadline:
        time.sleep(0.2)  # the broker's metadata follows the controller's deletion
    assert missing_topics(kafka, names) == names


def test_a_topic_the_broker_never_serves_is_named(infra: LocalInfra, uid: str) -> None:
    admin = AdminClient(KafkaSettings(bootstrap=infra.bootstrap).admin_config())
    with pytest.raises(BrokerError, match=f"never-{uid}"):
        wait_served(admin, [f"never-{uid}"], timeout_s=1.0)


def test_thousand_avro_transactions_round_trip(infra: LocalInfra, uid: str) -> None:
    kafka = KafkaSettings(bootstrap=infra.bootstrap)
    topic = f"tx-{uid}"
    ensure_topics(kafka, [topic], partitions=3)
    codec = Codec()
    sent = [sample_transaction(i) for i in range(1000)]
    producer = Producer(kafka.producer_config(None))
    for tx in sent:
        producer.produce(topic, codec.encode("Transaction", tx), key=tx["customer_id"].encode())
    assert producer.flush(30) == 0

    consumer = Consumer(kafka.consumer_config(f"g-{uid}"))
    consumer.subscribe([topic])
    try:
        msgs = _drain(consumer, 1000)
    finally:
        consumer.close()
    batch = codec.decode_messages("Transaction", msgs)
    assert batch.errs == []
    got = {d.value["transaction_id"]: d.value for d in batch.oks}
    assert len(got) == 1000
    assert got == {tx["transaction_id"]: tx for tx in sent}


def test_transaction_with_offsets_is_seen_exactly_by_read_committed(infra: LocalInfra, uid: str) -> None:
    kafka = KafkaSettings(bootstrap=infra.bootstrap)
    src, dst = f"src-{uid}", f"dst-{uid}"
    ensure_topics(kafka, [src, dst], partitions=1)
    codec = Codec()
    plain = Producer(kafka.producer_config(None))
    for i in range(10):
        plain.produce(src, codec.encode("Transaction", sample_transaction(i)))
    assert plain.flush(30) == 0

    group = f"g-{uid}"
    consumer = Consumer(kafka.consumer_config(group))
    consumer.subscribe([src])
    tx_producer = Producer(kafka.producer_config(f"tid-{uid}"))
    tx_producer.init_transactions(30)
    try:
        msgs = _drain(consumer, 10)
        assert len(msgs) == 10
        # An aborted transaction: its records must never be visible.
        tx_producer.begin_transaction()
        tx_producer.produce(dst, b"aborted")
        tx_producer.flush(10)
        tx_producer.abort_transaction(30)
        # A committed one carrying the consumer's offsets.
        tx_producer.begin_transaction()
        for m in msgs:
            tx_producer.produce(dst, m.value(), key=b"committed")
        tx_producer.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
        tx_producer.commit_transaction(30)
    finally:
        consumer.close()

    reader = Consumer(kafka.consumer_config(f"reader-{uid}"))
    reader.subscribe([dst])
    try:
        seen = _drain(reader, 11, timeout_s=10)
    finally:
        reader.close()
    assert len(seen) == 10
    assert all(m.key() == b"committed" for m in seen)
    assert [codec.decode("Transaction", m.value()) for m in seen] == [sample_transaction(i) for i in range(10)]

    # The offsets went in with the transaction: the group resumes after the batch.
    resumed = Consumer(kafka.consumer_config(group))
    try:
        from confluent_kafka import TopicPartition

        (committed,) = resumed.committed([TopicPartition(src, 0)], timeout=10)
        assert committed.offset == 10
    finally:
        resumed.close()
