"""Produce simulated (or recorded) transactions to Kafka at a given rate, with
fraud labels following once simulated time passes their label time."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from stream.config import KafkaSettings
from stream.errors import BrokerError
from stream.kafka.calls import produce
from stream.kafka.schema_registry import codec_for


class Pacer:
    """Holds a producer to `rate` records per second (0 = as fast as possible), checked about
    every millisecond; at each check it also serves the producer's delivery reports."""

    def __init__(self, producer: Producer, rate: float) -> None:
        self.producer, self.rate = producer, rate
        self.step = max(1, int(rate // 1000))
        self.start = time.monotonic()

    def sent(self, i: int) -> None:
        """Record i (from 0) was produced: wait if the stream is ahead of its rate."""
        if self.rate <= 0 or i % self.step != self.step - 1:
            return
        ahead = (i + 1) / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)
        self.producer.poll(0)


def delivery_timeout_s(kafka: KafkaSettings) -> float:
    """How long the producer keeps retrying a record before it reports it failed."""
    conf = kafka.producer_config(None)
    ms = conf.get("message.timeout.ms", conf.get("delivery.timeout.ms", 300_000))
    return int(ms) / 1000


def produce_stream(
    kafka: KafkaSettings,
    events: Sequence[Mapping[str, Any]],
    rate: float,
    labels: Sequence[Mapping[str, Any]] = (),
    on_progress: Callable[[int], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    producer: Producer | None = None,
) -> tuple[int, int]:
    """Produce `events` (keyed by customer id) at `rate` per second (0 = as fast as possible),
    paced about every millisecond. Pass a `producer` to keep one warm across calls.

    Returns (transactions sent, labels sent) — fewer when `stop` ended it early — once the
    broker has acknowledged every record. A broker that is away is waited for as long as the
    producer's delivery timeout, which gives every record a report; BrokerError when any was
    refused or timed out.
    """
    codec = codec_for(kafka)
    if producer is None:
        producer = Producer(kafka.producer_config(None, client_id="fraudstream-feed"))
    topics = kafka.topics
    # Connect and fetch metadata first: records are timestamped when produce() is called,
    # so a cold producer would charge its own start-up to the pipeline's latency.
    producer.list_topics(topics.transactions, timeout=10)
    wanted = {
        "transaction_id",
        "event_time",
        "customer_id",
        "terminal_id",
        "amount",
        "currency",
        "channel",
        "mcc",
        "device_id",
        "ip",
        "latitude",
        "longitude",
        "country",
    }
    label_fields = {"transaction_id", "customer_id", "terminal_id", "is_fraud", "label_time", "event_time", "source"}
    li = sent = sent_labels = 0
    failed: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(err)

    pacer = Pacer(producer, rate)
    for i, ev in enumerate(events):
        if stop():
            break
        tx = {k: v for k, v in ev.items() if k in wanted}
        produce(producer, topics.transactions, codec.encode("Transaction", tx), tx["customer_id"].encode(), on_delivery=delivered)
        while li < len(labels) and int(labels[li]["label_time"]) <= int(tx["event_time"]):
            lab = {k: v for k, v in labels[li].items() if k in label_fields}
            produce(producer, topics.labels, codec.encode("Label", lab), lab["transaction_id"].encode(), on_delivery=delivered)
            li += 1
            sent_labels += 1
        sent = i + 1
        pacer.sent(i)
        if on_progress is not None and i % 50 == 49:
            on_progress(sent)
    # librdkafka reports every record within its delivery timeout (retrying through a broker
    # restart until then), so waiting that long, plus a margin, never cuts off a recovery.
    wait_s = delivery_timeout_s(kafka) + 10
    unacknowledged = producer.flush(wait_s)
    if failed or unacknowledged:
        first = f" (first: {failed[0].str()})" if failed else ""
        raise BrokerError(
            f"{len(failed)} records refused by the broker{first}, {unacknowledged} unacknowledged after {wait_s:.0f} s"
        )
    if on_progress is not None:
        on_progress(sent)
    return sent, sent_labels
