"""The label consumer: late fraud reports into terminal risk state in Redis.

Counting is idempotent per transaction id (see `stream/state/featurestore.py`), so
committing offsets after the Redis update is effectively exactly-once. The label
delay is honoured where the features are read: risk only looks at days older
than the delay.
"""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import Message

from stream.config import Topics
from stream.deadletter import dead_letter
from stream.kafka.codec import Codec
from stream.records import BatchResult
from stream.state.featurestore import RedisFeatureStore


class LabelConsumer:
    def __init__(self, codec: Codec, store: RedisFeatureStore, topics: Topics) -> None:
        self.codec = codec
        self.store = store
        self.topics = topics

    def process(self, messages: Sequence[Message]) -> BatchResult:
        batch = self.codec.decode_messages("Label", messages)
        self.store.apply_labels([d.value for d in batch.oks])
        return BatchResult([dead_letter(self.topics.dlq, f, "labels") for f in batch.errs])
