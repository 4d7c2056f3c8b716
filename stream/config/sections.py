"""The settings sections beside Kafka's; every field carries its description, from which
docs/configuration.md is generated (`python -m stream.config.reference`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, field_validator, model_validator

from models.rules import DEFAULT_RULES, Rule
from stream.config.kafka import KafkaSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedisSettings(_Strict):
    url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="redis:// or rediss:// (TLS) URL of the feature store; in cluster mode any one node's",
    )
    cluster: bool = Field(False, description="a Redis Cluster: keys spread over its primaries by hash slot")
    username: str | None = Field(None, description="ACL user; none = the default user")
    password: SecretStr | None = Field(None, description="the user's password (a secret: never logged or echoed)")
    tls_ca: FilePath | None = Field(None, description="PEM file of the CA that signed the server's certificate (rediss://)")
    tls_certificate: FilePath | None = Field(None, description="PEM client certificate, for mutual TLS")
    tls_key: FilePath | None = Field(None, description="PEM private key of the client certificate")
    tls_check_hostname: bool = Field(True, description="check that the server's certificate names the host (rediss://)")
    namespace: str = Field("live", pattern=r"^[A-Za-z0-9_.-]+$", description="key prefix; backtests use their own")
    ttl_days: int = Field(40, ge=1, description="TTL of every feature key")
    socket_timeout_s: float = Field(1.0, gt=0, description="a Redis call slower than this counts as a failure")

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("must start with redis:// or rediss://")
        if parts.password:
            raise ValueError("carries a password: set redis.password (a secret) instead")
        return url

    @model_validator(mode="after")
    def _tls_complete(self) -> RedisSettings:
        tls_files = (self.tls_ca, self.tls_certificate, self.tls_key)
        if any(f is not None for f in tls_files) and not self.url.startswith("rediss://"):
            raise ValueError("redis.tls_* files are set but redis.url is not rediss://")
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("redis.tls_certificate and tls_key go together (mutual TLS)")
        return self


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

    max_rows: int = Field(500, ge=1, le=100_000, description="records per micro-batch at most")
    max_wait_ms: int | None = Field(
        None, ge=0, le=60_000, description="wait after the first record; none: 2 exactly-once, 0 at-least-once"
    )

    def wait_s(self, exactly_once: bool) -> float:
        if self.max_wait_ms is not None:
            return self.max_wait_ms / 1000
        return EXACTLY_ONCE_WAIT_MS / 1000 if exactly_once else 0.0


class ScorerBatch(BatchSettings):
    max_rows: int = Field(
        2000, ge=1, le=100_000, description="records per micro-batch at most (a backlog: one transaction each, fewer commits)"
    )


class DeepBatch(BatchSettings):
    max_rows: int = Field(256, ge=1, le=100_000, description="records per micro-batch at most")


class LabelBatch(BatchSettings):
    max_rows: int = Field(1000, ge=1, le=100_000, description="records per micro-batch at most")
    max_wait_ms: int | None = Field(100, ge=0, le=60_000, description="wait after the first record")


class ScorerSettings(_Strict):
    group_id: str = Field("fraudstream-scorer", description="consumer group of stage 1")
    batch: ScorerBatch = Field(ScorerBatch(), description="stage 1's micro-batches")
    transactional_id_prefix: str = Field("fraudstream-scorer", description="+ '-<instance>': each replica's transactional id")
    threads: int = Field(1, ge=1, le=256, description="XGBoost threads; more pay only with cores to spare")
    max_record_bytes: int = Field(65_536, ge=256, description="larger transaction records go to the DLQ")
    max_future_skew_s: int = Field(86_400, ge=0, description="event_time this far past the record timestamp is rejected")
    max_event_age_days: int = Field(0, ge=0, description="older event_time is rejected; 0 = no limit (replays)")


class ArmSettings(_Strict):
    """An A/B arm: customers are assigned by a stable hash of their id, in proportion to `share`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="the arm's name, carried by its decisions")
    share: float = Field(gt=0, description="relative share of customers")
    model_version: str | None = Field(None, description="pinned version; none = the promoted one")


class FallbackSettings(_Strict):
    """The degradation chain: deep → XGB_FALLBACK, XGBoost → RULES, everything → SAFE_DEFAULT."""

    safe_default: Literal["REVIEW", "BLOCK"] = Field("REVIEW", description="the outcome when nothing can decide")
    rules: tuple[Rule, ...] = Field(DEFAULT_RULES, description="static rules used while XGBoost cannot score")
    rules_no_match: Literal["APPROVE", "REVIEW"] = Field("APPROVE", description="outcome when every rule ran and none matched")
    xgb_deadline_ms: float = Field(250.0, gt=0, description="a slower XGBoost batch counts as a failure")
    breaker_failures: int = Field(3, ge=1, description="failures in a row that open a dependency's circuit breaker")
    breaker_reset_s: float = Field(5.0, gt=0, description="an open breaker lets one try through after this long")
    deep_heartbeat_s: float = Field(3.0, gt=0, description="no worker heartbeat for this long = deep stage down")
    deep_max_lag: int = Field(50_000, ge=1, description="buffer records not yet decided before falling back")
    deep_check_interval_s: float = Field(1.0, gt=0, description="how often stage 1 re-checks the deep stage")


class DeepSettings(_Strict):
    group_id: str = Field("fraudstream-deep", description="consumer group of stage 2")
    batch: DeepBatch = Field(DeepBatch(), description="stage 2's micro-batches")
    transactional_id_prefix: str = Field("fraudstream-deep", description="+ '-<instance>': each replica's transactional id")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU")
    cpu_threads: int = Field(1, ge=1, le=256, description="torch threads when on CPU (and XGBoost's)")
    gpu_memory_fraction: float = Field(0.7, gt=0.0, le=1.0, description="share of the GPU's memory the worker may use")
    pad_sizes: tuple[int, ...] = Field((64, 256, 1024), description="batch sizes rows are padded to (fixed shapes)")
    fp16: bool = Field(False, description="autocast to fp16 on CUDA (CPU always runs fp32)")
    compile: bool = Field(False, description="torch.compile the model for each padded size at start-up")

    @model_validator(mode="after")
    def _pads_sorted(self) -> DeepSettings:
        if list(self.pad_sizes) != sorted(set(self.pad_sizes)) or self.pad_sizes[0] < 1:
            raise ValueError("deep.pad_sizes must be strictly increasing positive sizes")
        return self


class LabelSettings(_Strict):
    group_id: str = Field("fraudstream-labels", description="consumer group of the label consumer")
    transactional_id_prefix: str = Field("fraudstream-labels", description="+ '-<instance>': each replica's transactional id")
    batch: LabelBatch = Field(LabelBatch(), description="the label consumer's micro-batches")


class ModelSettings(_Strict):
    dir: Path = Field(Path("artifacts"), description="folder of model versions")
    version: str = Field("latest", description="a version folder under dir, or 'latest' (the promoted one)")


class MetricsSettings(_Strict):
    port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics, /healthz, /readyz; 0 = off")
    host: str = Field("0.0.0.0", description="address the metrics endpoint binds to")  # noqa: S104 - scraped from outside


class Settings(_Strict):
    kafka: KafkaSettings = Field(KafkaSettings(), description="brokers, topics, processing guarantee, client overrides")
    redis: RedisSettings = Field(RedisSettings(), description="the feature store")
    scorer: ScorerSettings = Field(ScorerSettings(), description="stage 1")
    deep: DeepSettings = Field(DeepSettings(), description="stage 2")
    labels: LabelSettings = Field(LabelSettings(), description="the label consumer")
    fallback: FallbackSettings = Field(FallbackSettings(), description="the degradation chain")
    arms: tuple[ArmSettings, ...] = Field((), description="A/B arms; none = one arm on the promoted version")
    model: ModelSettings = Field(ModelSettings(), description="model versions")
    metrics: MetricsSettings = Field(MetricsSettings(), description="the metrics endpoint")
    log_format: Literal["console", "json"] = Field("console", description="console: key=value; json: one object per line")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="lowest level logged")
