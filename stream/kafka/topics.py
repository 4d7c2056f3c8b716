"""Topic administration through confluent-kafka's AdminClient."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka import admin as kafka_admin
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from stream.config import KafkaSettings
from stream.errors import BrokerError

#: what to do about an unreachable broker, said once at the end of the error
UNREACHABLE_HINT = "is it running? `make up` starts the local one; `kafka.bootstrap` says where to look"


def ensure_topics(
    kafka: KafkaSettings, names: Iterable[str], partitions: int | None = None, ready_s: float = 30.0, connect_s: float = 15.0
) -> dict[str, int]:
    """Create the topics that do not exist yet (existing ones are left as they are), then wait
    until the broker serves every partition of every topic named; returns each one's partition count.

    The wait matters: a topic exists for the controller a moment before its partitions exist
    on the broker, and records produced in between by an idempotent producer can be
    acknowledged yet never written (seen with librdkafka 2.16 against Kafka 4.1: a partition's
    log began at sequence 1 or 2, the first records reported delivered and absent).
    """
    refused: list[str] = []

    def on_error(err: KafkaError) -> None:
        # A wrong password or an untrusted certificate looks like a transport failure to
        # list_topics; librdkafka reports the real cause here.
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED):
            refused.append(err.str())

    admin = AdminClient(kafka.admin_config() | {"error_cb": on_error})
    wanted = sorted(set(names))
    try:
        existing = admin.list_topics(timeout=connect_s).topics
    except KafkaException as exc:
        admin.poll(0)
        if refused:
            raise BrokerError(f"the broker at {kafka.bootstrap} refused the connection: {refused[-1]}") from exc
        raise BrokerError(f"cannot reach the broker at {kafka.bootstrap} ({UNREACHABLE_HINT}): {exc.args[0].str()}") from exc
    missing = [n for n in wanted if n not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(n, num_partitions=partitions or kafka.partitions, replication_factor=kafka.replication_factor)
                for n in missing
            ],
            operation_timeout=15,
        )
        for name, fut in futures.items():
            try:
                fut.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BrokerError(f"could not create topic {name}: {exc}") from exc
    return wait_served(admin, wanted, ready_s)


def delete_topics(kafka: KafkaSettings, names: Iterable[str], timeout_s: float = 30.0) -> int:
    """Delete `names`, waiting for the broker's answer; returns how many it deleted (one it does
    not know is already gone). BrokerError names a topic the broker refused to delete. The
    admin client is held until every answer is in: one dropped earlier cancels its requests."""
    wanted = sorted(set(names))
    if not wanted:
        return 0
    admin = AdminClient(kafka.admin_config())
    deleted = 0
    for name, fut in admin.delete_topics(wanted, operation_timeout=timeout_s).items():
        try:
            fut.result(timeout_s + 5)
            deleted += 1
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise BrokerError(f"could not delete topic {name}: {exc}") from exc
    return deleted


def missing_topics(kafka: KafkaSettings, names: Iterable[str]) -> list[str]:
    """Which of `names` the broker does not know, in one metadata request (BrokerError when it
    cannot be asked)."""
    try:
        known = AdminClient(kafka.admin_config()).list_topics(timeout=10).topics
    except KafkaException as exc:
        raise BrokerError(f"cannot reach the broker at {kafka.bootstrap} ({UNREACHABLE_HINT}): {exc.args[0].str()}") from exc
    return sorted(n for n in set(names) if n not in known)


def topic_exists(kafka: KafkaSettings, name: str) -> bool:
    """Whether the broker knows `name` (BrokerError when it cannot be asked)."""
    return not missing_topics(kafka, [name])


# Errors that no amount of waiting turns into a served partition.
_NEVER_SERVED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}


def wait_served(admin: AdminClient, topics: list[str], timeout_s: float) -> dict[str, int]:
    """Until each partition of `topics` answers an end-offset query from its leader; returns each
    topic's partition count, BrokerError naming what is still not served after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            meta = admin.list_topics(timeout=max(deadline - time.monotonic(), 1.0)).topics
        except KafkaException as exc:
            raise BrokerError(f"cannot read the broker's metadata: {exc.args[0].str()}") from exc
        known = [t for t in topics if t in meta and meta[t].error is None and meta[t].partitions]
        parts = [TopicPartition(t, p) for t in known for p in sorted(meta[t].partitions)]
        pending = [TopicPartition(t, -1) for t in topics if t not in known]
        if parts:
            latest = kafka_admin.OffsetSpec.latest()  # type: ignore[attr-defined,no-untyped-call]
            futures = admin.list_offsets(dict.fromkeys(parts, latest), request_timeout=5)
            for tp, fut in futures.items():
                try:
                    fut.result()
                except KafkaException as exc:
                    if exc.args[0].code() in _NEVER_SERVED:  # waiting cannot help
                        raise BrokerError(f"{tp.topic}[{tp.partition}] cannot be queried: {exc.args[0].str()}") from exc
                    pending.append(tp)
        if not pending:
            return {t: len(meta[t].partitions) for t in topics}
        if time.monotonic() >= deadline:
            names = ", ".join(sorted({f"{tp.topic}[{tp.partition}]" if tp.partition >= 0 else tp.topic for tp in pending}))
            raise BrokerError(f"topics not served by the broker after {timeout_s:.0f} s: {names}")
        time.sleep(0.1)


def pipeline_topics(kafka: KafkaSettings) -> list[str]:
    """Every topic the pipeline reads or writes."""
    t = kafka.topics
    return [t.transactions, t.ambiguous, t.decisions, t.labels, t.dlq, t.shadow]
