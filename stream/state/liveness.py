"""Is the deep stage there? A worker heartbeat in Redis plus the buffer topic's lag.

The scorer asks between batches. With `start()`, a background thread refreshes the
answer every `check_interval_s` and the scorer only reads a flag: the lag query (a
few broker round trips) never stalls a batch. Without it, the answer is refreshed
inline, at most once per interval (tests drive that with an injected clock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import redis
import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from stream.config import FallbackSettings, KafkaSettings
from stream.state.featurestore import RedisFeatureStore

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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Refresh in a background thread from now on."""
        self._refresh()
        self._thread = threading.Thread(target=self._run, name="deep-health", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.deep_check_interval_s):
            self._refresh()

    def available(self) -> bool:
        if self._thread is None:
            now = self.clock()
            if now - self._checked_at >= self.settings.deep_check_interval_s:
                self._checked_at = now
                self._refresh()
        return self._available

    def _refresh(self) -> None:
        was = self._available
        self._available = self._check()
        if was != self._available:
            log.warning("deep_stage_" + ("back" if self._available else "down"), lag=self.lag)

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
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._offsets.close()
