"""CPU that micro-batching costs in the consuming thread, per record: the stages' `collect`
(the first record via a waiting consume, the rest taken without waiting after sleeping out
the batch budget) against asking librdkafka to wait for the whole batch, which wakes the
caller for every record that arrives. Both read the same stream, 2,000 records/s of 250
bytes, with batches of at most 500 records or 2 ms, and 3 ms of stand-in work per batch.

Run with `python -m bench.consume` against the local broker (`make up`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from stream.config import KafkaSettings, load_settings
from stream.kafka.batching import collect
from stream.kafka.topics import delete_topics, wait_served

RATE, SECONDS, MAX_ROWS, MAX_WAIT_S = 2000, 5.0, 500, 0.002


def waiting_collect(consume: Callable[[int, float], list[Message]], max_rows: int, max_wait_s: float) -> list[Message]:
    """The baseline: after the first record, consume(rest, time left) until the budget is spent."""
    batch = consume(1, 0.2)
    if not batch:
        return batch
    deadline = time.monotonic() + max_wait_s
    while len(batch) < max_rows and (left := deadline - time.monotonic()) > 0:
        batch.extend(consume(max_rows - len(batch), left))
    return batch


def _feed(bootstrap: str, topic: str, stop: threading.Event) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, "enable.idempotence": True})
    start, i = time.monotonic(), 0
    while not stop.is_set():
        producer.produce(topic, b"x" * 250, key=str(i).encode())
        i += 1
        if i % 2 == 0:
            time.sleep(max(0.0, i / RATE - (time.monotonic() - start)))
            producer.poll(0)
    producer.flush(10)


def measure(bootstrap: str, name: str, batcher: Callable[[Consumer], list[Message]]) -> dict[str, Any]:
    topic = f"bench-consume-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(30)
    wait_served(admin, [topic], 30.0)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})  # fmt: skip
    consumer.subscribe([topic])
    consumer.consume(1, 5)
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(bootstrap, topic, stop))
    feeder.start()
    time.sleep(1.0)
    records = batches = 0
    wall, cpu = time.perf_counter(), time.thread_time()
    while time.perf_counter() - wall < SECONDS:
        records += len(batcher(consumer))
        batches += 1
        time.sleep(0.003)  # stands in for the batch's work, which is not counted
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    stop.set()
    feeder.join()
    consumer.close()
    delete_topics(KafkaSettings(bootstrap=bootstrap), [topic])
    result = {"records": records, "batches": batches, "cpu_ms": cpu * 1000, "us_per_record": cpu * 1e6 / max(records, 1)}
    print(f"{name:<28} {records:>6} records in {batches:>4} batches over {wall:.1f} s: "
          f"{result['us_per_record']:.1f} µs CPU per record", flush=True)  # fmt: skip
    return result


def main() -> None:
    bootstrap = load_settings().kafka.bootstrap
    base = measure(bootstrap, "waiting consume (baseline)", lambda c: waiting_collect(c.consume, MAX_ROWS, MAX_WAIT_S))
    ours = measure(bootstrap, "stream.kafka.batching.collect", lambda c: collect(c.consume, MAX_ROWS, MAX_WAIT_S, time.monotonic))
    print(f"collect uses {base['us_per_record'] / ours['us_per_record']:.1f}x less CPU per record than the baseline")


if __name__ == "__main__":
    main()
