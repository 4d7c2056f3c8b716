"""Is the deep stage there? A worker heartbeat in Redis plus the buffer topic's lag.

The scorer asks between batches; answers are cached for `check_interval_s` so
the check costs nothing on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable

import redis
import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from stream.config import FallbackSettings, KafkaSettings
from stream.featurestore import RedisFeatureStore

log = structlog.get_logger("fraudstream.health")
DEEP = "deep"


class DeepHealth:
    def __init__(
        self,
        kafka: KafkaSettings,
        deep_group: str,
        store: RedisFeatureStore,
        settings: FallbackSettings,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.topic = kafka.topics.ambiguous
        # Reads the deep group's committed offsets; never subscribes, so never joins the group.
        self._offsets = Consumer(kafka.consumer_config(deep_group, client_id="fraudstream-health"))
        self._checked_at = -1e18
        self._available = True
        self.lag = 0

    def available(self) -> bool:
        now = self.clock()
        if now - self._checked_at >= self.settings.deep_check_interval_s:
            self._checked_at = now
            was = self._available
            self._available = self._check()
            if was != self._available:
                log.warning("deep_stage_" + ("back" if self._available else "down"), lag=self.lag)
        return self._available

    def _check(self) -> bool:
        try:
            if not self.store.alive(DEEP):
                return False
        except (redis.RedisError, OSError):
            return False  # cannot confirm the worker: fall back
        self.lag = self._lag()
        return self.lag <= self.settings.deep_max_lag

    def _lag(self) -> int:
        try:
            meta = self._offsets.list_topics(self.topic, timeout=2)
            parts = [TopicPartition(self.topic, p) for p in meta.topics[self.topic].partitions]
            committed = self._offsets.committed(parts, timeout=2)
            total = 0
            for tp in committed:
                _, high = self._offsets.get_watermark_offsets(TopicPartition(self.topic, tp.partition), timeout=2)
                total += high - max(tp.offset, 0) if high >= 0 else 0
            return total
        except (KafkaException, KeyError):
            return self.lag  # keep the last known value; the heartbeat still decides

    def close(self) -> None:
        self._offsets.close()
