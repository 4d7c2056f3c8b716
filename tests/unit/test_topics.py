"""wait_served against a stand-in admin client: when it returns, when it gives up, what it names."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream.errors import BrokerError
from stream.kafka.topics import wait_served


@dataclass
class _Topic:
    partitions: dict[int, Any]
    error: KafkaError | None = None


@dataclass
class FakeAdmin:
    """Metadata lists `topics`; an offset query of a partition fails with `failing[tp]` for its
    first `fail_rounds` queries."""

    topics: dict[str, int]
    failing: dict[tuple[str, int], int] = field(default_factory=dict)
    fail_rounds: int = 0
    queries: int = 0

    def list_topics(self, timeout: float) -> Any:
        return type("Meta", (), {"topics": {t: _Topic(dict.fromkeys(range(n))) for t, n in self.topics.items()}})()

    def list_offsets(self, specs: dict[TopicPartition, Any], request_timeout: float) -> dict[TopicPartition, Future[Any]]:
        self.queries += 1
        out: dict[TopicPartition, Future[Any]] = {}
        for tp in specs:
            fut: Future[Any] = Future()
            code = self.failing.get((tp.topic, tp.partition))
            if code is not None and self.queries <= self.fail_rounds:
                fut.set_exception(KafkaException(KafkaError(code)))
            else:
                fut.set_result(object())
            out[tp] = fut
        return out


def test_returns_once_every_partition_answers() -> None:
    admin = FakeAdmin({"a": 2, "b": 1}, failing={("a", 1): KafkaError.NOT_LEADER_FOR_PARTITION}, fail_rounds=3)
    assert wait_served(admin, ["a", "b"], timeout_s=5.0) == {"a": 2, "b": 1}  # type: ignore[arg-type]
    assert admin.queries == 4


def test_names_what_is_still_not_served_when_the_time_is_up() -> None:
    admin = FakeAdmin({"a": 2}, failing={("a", 1): KafkaError.UNKNOWN_TOPIC_OR_PART}, fail_rounds=10**6)
    with pytest.raises(BrokerError, match=r"a\[1\], missing-topic"):
        wait_served(admin, ["a", "missing-topic"], timeout_s=0.3)  # type: ignore[arg-type]


def test_an_authorization_failure_is_reported_at_once() -> None:
    admin = FakeAdmin({"a": 1}, failing={("a", 0): KafkaError.TOPIC_AUTHORIZATION_FAILED}, fail_rounds=10**6)
    with pytest.raises(BrokerError, match=r"a\[0\] cannot be queried"):
        wait_served(admin, ["a"], timeout_s=30.0)  # type: ignore[arg-type]
    assert admin.queries == 1  # not retried until the time is up
