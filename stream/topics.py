"""Topic administration through confluent-kafka's AdminClient."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from stream.config import KafkaSettings
from stream.errors import BrokerError


def ensure_topics(kafka: KafkaSettings, names: Iterable[str], partitions: int | None = None) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AdminClient(kafka.admin_config())
    wanted = sorted(set(names))
    existing = admin.list_topics(timeout=15).topics
    missing = [n for n in wanted if n not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions or kafka.partitions, replication_factor=1) for n in missing],
        operation_timeout=15,
    )
    for name, fut in futures.items():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"could not create topic {name}: {exc}") from exc


def pipeline_topics(kafka: KafkaSettings) -> list[str]:
    """Every topic the pipeline reads or writes."""
    t = kafka.topics
    return [t.transactions, t.ambiguous, t.decisions, t.labels, t.dlq, t.shadow]
