"""Readiness probe: exits 0 once the broker at argv[1] completes a Kafka transaction."""

import sys
import uuid

from confluent_kafka import KafkaException, Producer


def main(bootstrap: str) -> int:
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
        producer.produce("fraudstream.ready", b"ok")
        producer.commit_transaction(15)
    except KafkaException as exc:
        print(f"not ready: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
