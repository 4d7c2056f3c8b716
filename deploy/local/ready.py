"""Readiness probe: exits 0 once the broker at argv[1] completes a Kafka transaction."""

import sys
import uuid

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

TOPIC = "fraudstream.ready"


def main(bootstrap: str) -> int:
    # Topic auto-creation is off on this broker: the probe's topic is created here.
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})
    try:
        admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)], operation_timeout=10)[TOPIC].result(15)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            print(f"not ready: {exc}", file=sys.stderr)
            return 1
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"fraudstream-ready-{uuid.uuid4()}",
            "transaction.timeout.ms": 10000,
            "socket.timeout.ms": 5000,
            "message.timeout.ms": 10000,
        }
    )
    try:
        producer.init_transactions(15)
        producer.begin_transaction()
        producer.produce(TOPIC, b"ok")
        producer.commit_transaction(15)
    except KafkaException as exc:
        print(f"not ready: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
