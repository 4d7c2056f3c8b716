"""Wiring: settings in, a ready-to-run stage loop out."""

from __future__ import annotations

import redis

from models.features import FeatureEngine
from stream.codec import Codec
from stream.config import Settings
from stream.deep_worker import DeepWorker
from stream.featurestore import RedisFeatureStore
from stream.labels import LabelConsumer
from stream.registry import ModelRegistry
from stream.scorer import Scorer
from stream.stage import StageLoop
from stream.topics import ensure_topics, pipeline_topics


def feature_store(settings: Settings, delay_days: int) -> RedisFeatureStore:
    r = settings.redis
    client = redis.Redis.from_url(r.url, socket_timeout=r.socket_timeout_s, socket_connect_timeout=r.socket_timeout_s)
    return RedisFeatureStore(client, r.namespace, r.ttl_days, FeatureEngine(delay_days))


def _delay_days(models: ModelRegistry) -> int:
    cfg = models.current().manifest.get("train_config", {})
    return int(cfg.get("delay_days", 7))


def scorer_loop(settings: Settings, instance: str = "0") -> StageLoop:
    ensure_topics(settings.kafka, pipeline_topics(settings.kafka))
    models = ModelRegistry(settings.model.dir, settings.model.version)
    scorer = Scorer(Codec(), feature_store(settings, _delay_days(models)), models, settings.kafka.topics)
    s = settings.scorer
    return StageLoop("scorer", settings.kafka, s.group_id, settings.kafka.topics.transactions,
                     f"{s.transactional_id_prefix}-{instance}", s.batch, scorer.process)  # fmt: skip


def deep_loop(settings: Settings, instance: str = "0") -> StageLoop:
    ensure_topics(settings.kafka, pipeline_topics(settings.kafka))
    models = ModelRegistry(settings.model.dir, settings.model.version)
    worker = DeepWorker(Codec(), models, settings.kafka.topics, settings.deep)
    d = settings.deep
    return StageLoop("deep", settings.kafka, d.group_id, settings.kafka.topics.ambiguous,
                     f"{d.transactional_id_prefix}-{instance}", d.batch, worker.process)  # fmt: skip


def labels_loop(settings: Settings, delay_days: int = 7, instance: str = "0") -> StageLoop:
    ensure_topics(settings.kafka, pipeline_topics(settings.kafka))
    consumer = LabelConsumer(Codec(), feature_store(settings, delay_days), settings.kafka.topics)
    lb = settings.labels
    return StageLoop("labels", settings.kafka, lb.group_id, settings.kafka.topics.labels,
                     f"fraudstream-labels-{instance}", lb.batch, consumer.process)  # fmt: skip
