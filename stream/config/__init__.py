"""Settings: one frozen, strict model read from a YAML file and the environment.

kafka     `stream.config.kafka`: brokers, topics, guarantees, librdkafka translation
sections  every other section, and the Settings root
loading   file + environment → Settings, errors that name the key
reference docs/configuration.md generated from the fields' descriptions
"""

from __future__ import annotations

from stream.config.kafka import GUARDED, PRODUCER_MAX_MESSAGE_BYTES, KafkaSettings, Topics
from stream.config.loading import ENV_ALIASES, ENV_PREFIX, INFRA_VARIABLES, load_settings
from stream.config.sections import (
    EXACTLY_ONCE_WAIT_MS,
    ArmSettings,
    BatchSettings,
    DeepBatch,
    DeepSettings,
    FallbackSettings,
    LabelBatch,
    LabelSettings,
    MetricsSettings,
    ModelSettings,
    RedisSettings,
    ScorerBatch,
    ScorerSettings,
    Settings,
)

__all__ = [
    "ENV_ALIASES",
    "ENV_PREFIX",
    "EXACTLY_ONCE_WAIT_MS",
    "GUARDED",
    "INFRA_VARIABLES",
    "PRODUCER_MAX_MESSAGE_BYTES",
    "ArmSettings",
    "BatchSettings",
    "DeepBatch",
    "DeepSettings",
    "FallbackSettings",
    "KafkaSettings",
    "LabelBatch",
    "LabelSettings",
    "MetricsSettings",
    "ModelSettings",
    "RedisSettings",
    "ScorerBatch",
    "ScorerSettings",
    "Settings",
    "Topics",
    "load_settings",
]
