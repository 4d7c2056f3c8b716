"""Settings: one frozen, strict model read from a YAML file and the environment.

Precedence: defaults < file (``--config`` or ``FRAUDSTREAM_CONFIG``) < environment.
Environment keys are ``FRAUDSTREAM_<SECTION>__<KEY>`` (e.g. ``FRAUDSTREAM_SCORER__BATCH__MAX_ROWS``),
top-level keys ``FRAUDSTREAM_<KEY>`` (``FRAUDSTREAM_LOG_FORMAT``, ``FRAUDSTREAM_ARMS``),
plus two short aliases used by the test fixtures and the infra scripts:
``FRAUDSTREAM_KAFKA_BOOTSTRAP`` and ``FRAUDSTREAM_REDIS_URL``.
An unknown or mistyped key, in the file or the environment, fails at load with
a ConfigError naming it. The environment is read once, by the entry point.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic import ValidationError as PydanticValidationError

from stream.errors import ConfigError
from stream.kafkalog import kafka_logger
from stream.rules import DEFAULT_RULES, Rule

ENV_PREFIX = "FRAUDSTREAM_"
ENV_ALIASES = {
    "FRAUDSTREAM_KAFKA_BOOTSTRAP": ("kafka", "bootstrap"),
    "FRAUDSTREAM_REDIS_URL": ("redis", "url"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Topics(_Strict):
    transactions: str = "fraud.transactions"
    ambiguous: str = "fraud.transactions.ambiguous"
    decisions: str = "fraud.decisions"
    labels: str = "fraud.labels"
    dlq: str = "fraud.dlq"
    shadow: str = "fraud.decisions.shadow"


# The largest record fraudstream produces (librdkafka's default, stated so that it is one
# number): decisions and buffer records are a few hundred bytes, and a DLQ copy larger
# than stream.dlq.MAX_DLQ_VALUE_BYTES goes without its value, so no output can exceed it.
PRODUCER_MAX_MESSAGE_BYTES = 1_000_000


class KafkaSettings(_Strict):
    bootstrap: str = "127.0.0.1:9092"
    topics: Topics = Topics()
    partitions: int = Field(4, ge=1, description="partitions of topics fraudstream creates")
    processing: Literal["exactly_once", "at_least_once"] = "exactly_once"
    transaction_timeout_ms: int = Field(30_000, ge=1_000)
    commit_interval_ms: int = Field(100, ge=0, le=60_000, description="at-least-once: offsets committed at most this often")
    # The worst batch (deep worker on CPU, max_rows) takes well under a second;
    # five minutes leaves room for a stalled Redis without a spurious rebalance.
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    session_timeout_ms: int = Field(10_000, ge=3_000)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    schema_registry_url: str | None = None
    first_start: Literal["earliest", "latest"] = Field(
        "earliest",
        description="where a stage's group starts on a partition it has never committed; a partition whose "
        "committed offset was lost (the group's progress mark says it had one) stops the stage instead",
    )
    extra: dict[str, str | int | bool] = Field(default_factory=dict, description="raw librdkafka overrides")

    def _common(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
            # librdkafka's own log through structlog, rate-limited (stream.kafkalog).
            "logger": kafka_logger(),
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf

    def admin_config(self) -> dict[str, Any]:
        """librdkafka settings for the AdminClient."""
        return self._common() | {"client.id": "fraudstream-admin"}

    def consumer_config(
        self,
        group_id: str,
        *,
        client_id: str = "fraudstream",
        instance_id: str | None = None,
        offset_reset: Literal["earliest", "latest", "error"] = "earliest",
    ) -> dict[str, Any]:
        """librdkafka settings for a consumer of our pipeline; the one translation point.

        With `instance_id` the consumer is a static group member: a restarted
        replica with the same id takes its partitions back without a rebalance.
        The stages pass offset_reset="error": they place a partition without a committed
        offset themselves (`stream.progress`), and an offset out of range is an error to
        report, never a silent jump to the beginning.
        """
        conf = self._common() | {
            "group.id": group_id,
            "client.id": client_id,
            "enable.auto.commit": False,
            "auto.offset.reset": offset_reset,
            "isolation.level": "read_committed",
            "max.poll.interval.ms": self.max_poll_interval_ms,
            "session.timeout.ms": self.session_timeout_ms,
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.wait.max.ms": 100,
            "enable.partition.eof": False,
        }
        if instance_id is not None:
            conf["group.instance.id"] = instance_id
        return conf | dict(self.extra)

    def producer_config(self, transactional_id: str | None, *, client_id: str = "fraudstream") -> dict[str, Any]:
        """librdkafka settings for a producer; transactional when an id is given."""
        conf = self._common() | {
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 1,
            "compression.type": "lz4",
            "message.max.bytes": PRODUCER_MAX_MESSAGE_BYTES,
        }
        if transactional_id is not None:
            conf["transactional.id"] = transactional_id
            conf["transaction.timeout.ms"] = self.transaction_timeout_ms
            # A transaction begun right after the last commit meets CONCURRENT_TRANSACTIONS
            # until the broker has written the markers; the default 100 ms retry backoff
            # would put that whole wait into every such batch's latency.
            conf["retry.backoff.ms"] = 5
        return conf | dict(self.extra)

    @property
    def exactly_once(self) -> bool:
        return self.processing == "exactly_once"


class RedisSettings(_Strict):
    url: str = "redis://127.0.0.1:6379/0"
    namespace: str = Field("live", pattern=r"^[A-Za-z0-9_.-]+$", description="key prefix; backtests use their own")
    ttl_days: int = Field(40, ge=1, description="TTL of every feature key")
    socket_timeout_s: float = Field(1.0, gt=0)


# A stage's batch wait when none is configured: in exactly-once every batch is a Kafka
# transaction, and a short wait gathers more records per commit; in at-least-once a batch
# costs only its own work, so taking what is queued (no wait) gives the lowest latency and
# the batches still grow with the load.
EXACTLY_ONCE_WAIT_MS = 2


class BatchSettings(_Strict):
    """Micro-batch bounds: at most max_rows records, at most max_wait_ms after the first one.

    Each stage has its own subclass so that setting one field (say, from the environment)
    keeps that stage's default for the other rather than this class's.
    """

    max_rows: int = Field(500, ge=1, le=100_000)
    max_wait_ms: int | None = Field(None, ge=0, le=60_000, description="none: 2 exactly-once, 0 at-least-once")

    def wait_s(self, exactly_once: bool) -> float:
        if self.max_wait_ms is not None:
            return self.max_wait_ms / 1000
        return EXACTLY_ONCE_WAIT_MS / 1000 if exactly_once else 0.0


class ScorerBatch(BatchSettings):
    pass


class DeepBatch(BatchSettings):
    max_rows: int = Field(256, ge=1, le=100_000)


class LabelBatch(BatchSettings):
    max_rows: int = Field(1000, ge=1, le=100_000)
    max_wait_ms: int | None = Field(100, ge=0, le=60_000)


class ScorerSettings(_Strict):
    group_id: str = "fraudstream-scorer"
    batch: ScorerBatch = ScorerBatch()
    transactional_id_prefix: str = "fraudstream-scorer"
    threads: int = Field(1, ge=1, le=256, description="XGBoost threads; more pay only with cores to spare")
    max_record_bytes: int = Field(65_536, ge=256, description="larger transaction records go to the DLQ")
    max_future_skew_s: int = Field(86_400, ge=0, description="event_time this far past the record timestamp is rejected")
    max_event_age_days: int = Field(0, ge=0, description="older event_time is rejected; 0 = no limit (replays)")


class ArmSettings(_Strict):
    """An A/B arm: customers are assigned by a stable hash of their id, in proportion to `share`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    share: float = Field(gt=0)
    model_version: str | None = Field(None, description="pinned version; none = the promoted one")


class FallbackSettings(_Strict):
    """The degradation chain: deep → XGB_FALLBACK, XGBoost → RULES, everything → SAFE_DEFAULT."""

    safe_default: Literal["REVIEW", "BLOCK"] = "REVIEW"
    rules: tuple[Rule, ...] = DEFAULT_RULES
    rules_no_match: Literal["APPROVE", "REVIEW"] = "APPROVE"
    xgb_deadline_ms: float = Field(250.0, gt=0, description="a slower XGBoost batch counts as a failure")
    breaker_failures: int = Field(3, ge=1)
    breaker_reset_s: float = Field(5.0, gt=0)
    deep_heartbeat_s: float = Field(3.0, gt=0, description="no worker heartbeat for this long = deep stage down")
    deep_max_lag: int = Field(50_000, ge=1, description="buffer records not yet decided before falling back")
    deep_check_interval_s: float = Field(1.0, gt=0)


class DeepSettings(_Strict):
    group_id: str = "fraudstream-deep"
    batch: DeepBatch = DeepBatch()
    transactional_id_prefix: str = "fraudstream-deep"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_threads: int = Field(1, ge=1, le=256, description="torch threads when on CPU (and XGBoost's)")
    gpu_memory_fraction: float = Field(0.7, gt=0.0, le=1.0)
    pad_sizes: tuple[int, ...] = (64, 256, 1024)
    fp16: bool = Field(False, description="autocast to fp16 on CUDA (CPU always runs fp32)")
    compile: bool = Field(False, description="torch.compile the model for each padded size at start-up")

    @model_validator(mode="after")
    def _pads_sorted(self) -> DeepSettings:
        if list(self.pad_sizes) != sorted(set(self.pad_sizes)) or self.pad_sizes[0] < 1:
            raise ValueError("deep.pad_sizes must be strictly increasing positive sizes")
        return self


class LabelSettings(_Strict):
    group_id: str = "fraudstream-labels"
    transactional_id_prefix: str = "fraudstream-labels"
    batch: LabelBatch = LabelBatch()


class ModelSettings(_Strict):
    dir: Path = Path("artifacts")
    version: str = Field("latest", description="a version folder under dir, or 'latest'")


class MetricsSettings(_Strict):
    port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics, /healthz, /readyz; 0 = off")
    host: str = "0.0.0.0"  # noqa: S104 - a service's metrics endpoint must be reachable by the scraper


class Settings(_Strict):
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    scorer: ScorerSettings = ScorerSettings()
    deep: DeepSettings = DeepSettings()
    labels: LabelSettings = LabelSettings()
    fallback: FallbackSettings = FallbackSettings()
    arms: tuple[ArmSettings, ...] = ()
    model: ModelSettings = ModelSettings()
    metrics: MetricsSettings = MetricsSettings()
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from an optional YAML file and an environment mapping."""
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    file = path or (Path(env["FRAUDSTREAM_CONFIG"]) if env.get("FRAUDSTREAM_CONFIG") else None)
    if file is not None:
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"config file {file}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file}: top level must be a mapping")
        data = loaded
    for key, value in env.items():
        if key in ENV_ALIASES:
            _set(data, ENV_ALIASES[key], value)
        elif key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in Settings.model_fields:
            data[key[len(ENV_PREFIX) :].lower()] = _env_value(value)
        elif key.startswith(ENV_PREFIX) and "__" in key:
            path_parts = tuple(part.lower() for part in key[len(ENV_PREFIX) :].split("__"))
            _set(data, path_parts, _env_value(value))
    try:
        return Settings.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(_explain(exc)) from exc


def _env_value(value: str) -> Any:
    # Lists and mappings in the environment are written as YAML/JSON flow values.
    if value[:1] in "[{":
        return yaml.safe_load(value)
    return value


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{part}' is a value, not a section")
        node = child
    node[path[-1]] = value


def _explain(exc: PydanticValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{key}'")
        else:
            lines.append(f"config key '{key}': {err['msg']} (got {err.get('input')!r})")
    return "; ".join(lines)
