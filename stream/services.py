"""Wiring: settings in, a ready-to-run stage loop out (with its metrics endpoint)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import redis
import structlog

from models.decision import Arm
from models.features import FeatureEngine
from models.featureset import DEFAULT_DELAY_DAYS
from stream.config import DeepSettings, LabelSettings, ScorerSettings, Settings
from stream.kafka.loop import Process, StageLoop
from stream.kafka.schema_registry import codec_for
from stream.kafka.topics import ensure_topics, pipeline_topics
from stream.logs import Throttled
from stream.metrics import Metrics, serve
from stream.stages.labels import LabelConsumer
from stream.stages.scorer import Scorer
from stream.state.connection import redis_client
from stream.state.featurestore import RedisFeatureStore
from stream.state.liveness import DEEP, DeepHealth
from stream.state.progress import ProgressMarks
from stream.state.versions import ModelRegistry

log = structlog.get_logger("fraudstream.services")


def feature_store(settings: Settings, delay_days: int) -> RedisFeatureStore:
    r = settings.redis
    return RedisFeatureStore(redis_client(r), r.namespace, r.ttl_days, FeatureEngine(delay_days))


def _delay_days(models: ModelRegistry) -> int:
    bundle = models.usable
    if bundle is None:
        log.warning("feature_delay_default", days=DEFAULT_DELAY_DAYS, reason="no loadable model version at start")
        return DEFAULT_DELAY_DAYS
    return bundle.delay_days


def _metrics(settings: Settings, service: str) -> Metrics:
    metrics = Metrics(service)
    if settings.metrics.port:
        serve(metrics, settings.metrics.host, settings.metrics.port)
        log.info("metrics_listening", service=service, port=settings.metrics.port)
    return metrics


def scorer_loop(settings: Settings, instance: str = "0") -> StageLoop:
    ensure_topics(settings.kafka, pipeline_topics(settings.kafka))
    models = ModelRegistry(settings.model.dir, settings.model.version, deep=False, threads=settings.scorer.threads)
    store = feature_store(settings, _delay_days(models))
    metrics = _metrics(settings, "scorer")
    health = DeepHealth(settings.kafka, settings.deep.group_id, store, settings.fallback, time.monotonic)
    arms = [Arm(a.name, a.share, a.model_version) for a in settings.arms]
    topics = settings.kafka.topics
    scorer = Scorer(
        codec_for(settings.kafka), store, models, topics, settings.scorer, settings.fallback, health.available, arms=arms
    )
    scorer.warm_up()
    health.start()
    return _loop(
        settings, "scorer", settings.scorer, settings.kafka.topics.transactions, instance, scorer.process, metrics, store
    )


def _loop(
    settings: Settings,
    name: str,
    stage: ScorerSettings | DeepSettings | LabelSettings,
    topic: str,
    instance: str,
    process: Process,
    metrics: Metrics,
    store: RedisFeatureStore,
    tick: Callable[[], None] | None = None,
) -> StageLoop:
    """A stage's loop: its group, its replica's transactional id, its batches, its progress marks.

    What start-up built (libraries, models, compiled kernels: some 170,000 objects for stage 1)
    lives as long as the process: frozen out of the garbage collector's passes, so that a full
    pass walks only what batches left behind instead of pausing a batch for tens of ms."""
    gc.freeze()
    return StageLoop(
        name,
        settings.kafka,
        stage.group_id,
        topic,
        f"{stage.transactional_id_prefix}-{instance}",
        stage.batch,
        process,
        metrics=metrics,
        tick=tick,
        dlq_topic=settings.kafka.topics.dlq,
        marks=ProgressMarks(store.client, settings.redis.namespace, stage.group_id),
    )


def heartbeat(store: RedisFeatureStore, ttl_s: float, every_s: float = 0.5) -> Callable[[], None]:
    """A tick that tells scorers, through Redis, that a deep worker is consuming."""
    last = [0.0]
    warn = Throttled(log)  # an outage would log it twice a second

    def beat() -> None:
        now = time.monotonic()
        if now - last[0] < every_s:
            return
        last[0] = now
        try:
            store.heartbeat(DEEP, ttl_s)
        except (redis.RedisError, OSError) as exc:
            warn("heartbeat_failed", str(exc))

    return beat


def deep_loop(settings: Settings, instance: str = "0") -> StageLoop:
    from stream.stages.deep import DeepWorker  # torch: only the deep worker pays for it

    ensure_topics(settings.kafka, pipeline_topics(settings.kafka))
    models = ModelRegistry(settings.model.dir, settings.model.version, threads=settings.deep.cpu_threads)
    metrics = _metrics(settings, "deep")
    worker = DeepWorker(codec_for(settings.kafka), models, settings.kafka.topics, settings.deep)
    store = feature_store(settings, _delay_days(models))
    beat = heartbeat(store, settings.fallback.deep_heartbeat_s)
    return _loop(settings, "deep", settings.deep, settings.kafka.topics.ambiguous, instance, worker.process, metrics, store, beat)


def labels_loop(settings: Settings, instance: str = "0") -> StageLoop:
    ensure_topics(settings.kafka, pipeline_topics(settings.kafka))
    # Labels only count; the delay matters where features are read. The store needs one all the same.
    store = feature_store(settings, DEFAULT_DELAY_DAYS)
    consumer = LabelConsumer(codec_for(settings.kafka), store, settings.kafka.topics)
    metrics = _metrics(settings, "labels")
    return _loop(settings, "labels", settings.labels, settings.kafka.topics.labels, instance, consumer.process, metrics, store)
