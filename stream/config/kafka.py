"""Kafka settings and the one translation into librdkafka configurations.

Every client (consumer, producer, admin, the tools') gets the same connection settings:
`bootstrap`, security and `client` overrides. `producer` and `consumer` overrides apply to
that kind of client only. A key fraudstream sets for a guarantee (GUARDED) is refused at
load, naming it: overriding it would silently break exactly-once or the read_committed count.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, field_validator, model_validator

from stream.kafka.clientlog import kafka_logger

# The largest record fraudstream produces (librdkafka's default, stated so that it is one
# number): decisions and buffer records are a few hundred bytes, and a DLQ copy larger
# than stream.deadletter.MAX_DLQ_VALUE_BYTES goes without its value, so no output can exceed it.
PRODUCER_MAX_MESSAGE_BYTES = 1_000_000

# librdkafka keys the pipeline's guarantees rest on; an override of any of them is refused.
GUARDED = frozenset(
    {
        "isolation.level",  # the decision count and the stages read committed records only
        "enable.auto.commit",  # offsets are committed with the batch's transaction
        "enable.idempotence",  # no duplicate outputs on producer retries
        "acks",  # all in-sync replicas acknowledge every output
        "transactional.id",  # one per replica: it fences zombies
        "group.id",  # set per stage
        "group.instance.id",  # the replica's static membership
        "auto.offset.reset",  # partitions are placed by fraudstream (stream.kafka.membership)
        "enable.auto.offset.store",
        "bootstrap.servers",  # `kafka.bootstrap`
        "security.protocol",  # `kafka.security_protocol`
        "sasl.password",  # `kafka.sasl_password` (a secret)
        "ssl.key.password",  # `kafka.ssl_key_password` (a secret)
    }
)

Overrides = dict[str, str | int | float | bool]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Topics(_Strict):
    transactions: str = Field("fraud.transactions", description="input: transactions from upstream (key: customer_id)")
    ambiguous: str = Field("fraud.transactions.ambiguous", description="buffer: the ambiguous band, stage 1 to stage 2")
    decisions: str = Field("fraud.decisions", description="output: exactly one decision per transaction id")
    labels: str = Field("fraud.labels", description="input: late fraud reports (chargebacks)")
    dlq: str = Field("fraud.dlq", description="dead letters: unreadable records with provenance headers")
    shadow: str = Field("fraud.decisions.shadow", description="decisions of a candidate model in shadow mode")


class KafkaSettings(_Strict):
    bootstrap: str = Field("127.0.0.1:9092", description="broker list, host:port[,host:port...]")
    topics: Topics = Field(Topics(), description="topic names")
    partitions: int = Field(4, ge=1, description="partitions of topics fraudstream creates")
    replication_factor: int = Field(
        1,
        ge=1,
        le=16,
        description="replicas of topics fraudstream creates (3 on a production cluster, with min.insync.replicas 2)",
    )
    processing: Literal["exactly_once", "at_least_once"] = Field(
        "exactly_once", description="exactly_once: one Kafka transaction per batch; at_least_once: pipelined commits"
    )
    transaction_timeout_ms: int = Field(30_000, ge=1_000, description="a transaction open longer is aborted by the broker")
    commit_interval_ms: int = Field(100, ge=0, le=60_000, description="at-least-once: offsets committed at most this often")
    max_poll_interval_ms: int = Field(
        300_000, ge=10_000, description="a member not polling this long leaves the group (a stalled Redis fits inside)"
    )
    session_timeout_ms: int = Field(10_000, ge=3_000, description="a member not heard from this long is evicted")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="librdkafka security.protocol for every client"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (with a SASL_* security_protocol)"
    )
    sasl_username: str | None = Field(None, description="SASL user")
    sasl_password: SecretStr | None = Field(None, description="SASL password (a secret: never logged or echoed)")
    ssl_ca_location: FilePath | None = Field(
        None, description="PEM file of the CA that signed the brokers' certificates; none = the system's CAs"
    )
    ssl_certificate_location: FilePath | None = Field(None, description="PEM client certificate, for mutual TLS")
    ssl_key_location: FilePath | None = Field(None, description="PEM private key of the client certificate")
    ssl_key_password: SecretStr | None = Field(None, description="password of that key (a secret)")
    ssl_endpoint_identification: bool = Field(
        True, description="check that a broker's certificate names the host connected to (off only for tests)"
    )
    schema_registry_url: str | None = Field(
        None, description="http(s) URL of a Confluent-compatible registry (no credentials in it); none = the bundled ids"
    )
    schema_registry_username: str | None = Field(None, description="the registry's basic-auth user")
    schema_registry_password: SecretStr | None = Field(None, description="the registry's basic-auth password (a secret)")
    schema_registry_ca_location: FilePath | None = Field(None, description="PEM CA of the registry's certificate (https)")
    first_start: Literal["earliest", "latest"] = Field(
        "earliest",
        description="where a stage's group starts on a partition it has never committed; a partition whose "
        "committed offset was lost (the group's progress mark says it had one) stops the stage instead",
    )
    client: Overrides = Field(default_factory=dict, description="librdkafka settings for every client (TLS files, ...)")
    producer: Overrides = Field(default_factory=dict, description="librdkafka settings for producers only")
    consumer: Overrides = Field(default_factory=dict, description="librdkafka settings for consumers only")

    @field_validator("schema_registry_url")
    @classmethod
    def _registry_url(cls, url: str | None) -> str | None:
        if url is None:
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http(s) URL")
        if parts.username or parts.password:
            raise ValueError("carries credentials: set kafka.schema_registry_username and _password instead")
        return url

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password is not None):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs kafka.sasl_mechanism, sasl_username and sasl_password"
            )
        if not sasl and self.sasl_mechanism:
            raise ValueError(f"kafka.sasl_mechanism is set but security_protocol {self.security_protocol} has no SASL")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("kafka.ssl_certificate_location and ssl_key_location go together (mutual TLS)")
        return self

    @field_validator("client", "producer", "consumer")
    @classmethod
    def _not_guarded(cls, overrides: Overrides) -> Overrides:
        refused = sorted(set(overrides) & GUARDED)
        if refused:
            raise ValueError(f"{', '.join(refused)} cannot be overridden: fraudstream sets it for its guarantees")
        return overrides

    def _common(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
            # librdkafka's own log through structlog, rate-limited (stream.kafka.clientlog).
            "logger": kafka_logger(),
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            conf["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_endpoint_identification else "none"
            tls_files = {
                "ssl.ca.location": self.ssl_ca_location,
                "ssl.certificate.location": self.ssl_certificate_location,
                "ssl.key.location": self.ssl_key_location,
            }
            conf |= {key: str(path) for key, path in tls_files.items() if path is not None}
            if self.ssl_key_password is not None:
                conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return conf | dict(self.client)

    def admin_config(self) -> dict[str, Any]:
        """librdkafka settings for the AdminClient: the same connection settings as the others."""
        return self._common() | {"client.id": "fraudstream-admin"}

    def consumer_config(
        self,
        group_id: str,
        *,
        client_id: str = "fraudstream",
        instance_id: str | None = None,
        offset_reset: Literal["earliest", "latest", "error"] = "earliest",
    ) -> dict[str, Any]:
        """librdkafka settings for a consumer of our pipeline.

        With `instance_id` the consumer is a static group member: a restarted replica with
        the same id takes its partitions back without a rebalance. The stages pass
        offset_reset="error": they place a partition without a committed offset themselves
        (`stream.kafka.membership`), and an offset out of range is an error to report.
        """
        conf = self._common() | {
            "client.id": client_id,
            "max.poll.interval.ms": self.max_poll_interval_ms,
            "session.timeout.ms": self.session_timeout_ms,
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.wait.max.ms": 100,
            "enable.partition.eof": False,
        }
        guaranteed: dict[str, Any] = {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": offset_reset,
            "isolation.level": "read_committed",
        }
        if instance_id is not None:
            guaranteed["group.instance.id"] = instance_id
        return conf | dict(self.consumer) | guaranteed

    def producer_config(self, transactional_id: str | None, *, client_id: str = "fraudstream") -> dict[str, Any]:
        """librdkafka settings for a producer; transactional when an id is given."""
        conf = self._common() | {
            "client.id": client_id,
            "linger.ms": 1,
            "compression.type": "lz4",
            "message.max.bytes": PRODUCER_MAX_MESSAGE_BYTES,
        }
        guaranteed: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}
        if transactional_id is not None:
            guaranteed["transactional.id"] = transactional_id
            conf["transaction.timeout.ms"] = self.transaction_timeout_ms
            # A transaction begun right after the last commit meets CONCURRENT_TRANSACTIONS
            # until the broker has written the markers; the default 100 ms retry backoff
            # would put that whole wait into every such batch's latency.
            conf["retry.backoff.ms"] = 5
        return conf | dict(self.producer) | guaranteed

    @property
    def exactly_once(self) -> bool:
        return self.processing == "exactly_once"
