"""Shipped test fakes and helpers: run a stage, the loop and the checkpoint without a broker.

kafka    MemoryBroker, FakeConsumer, RecordingProducer (checks the transactional order)
stages   MemoryFeatureStore, FixedVersions, tiny_bundle
infra    FakeClock, unique names, free ports, sample transactions, the local infrastructure
deployments  a secured broker + Redis (SASL_SSL, TLS with an ACL user), a Redis Cluster
"""

from __future__ import annotations

from stream.infra import run_infra
from stream.testing.deployments import RedisCluster, SecuredInfra, redis_cluster, secured_infra
from stream.testing.infra import (
    FakeClock,
    LocalInfra,
    free_port,
    infra_env,
    isolated_env,
    local_infra,
    sample_transaction,
    unique,
)
from stream.testing.kafka import FakeConsumer, MemoryBroker, ProtocolViolation, RecordingProducer
from stream.testing.stages import FixedVersions, MemoryFeatureStore, tiny_bundle

__all__ = [
    "FakeClock",
    "FakeConsumer",
    "FixedVersions",
    "LocalInfra",
    "MemoryBroker",
    "MemoryFeatureStore",
    "ProtocolViolation",
    "RecordingProducer",
    "RedisCluster",
    "SecuredInfra",
    "free_port",
    "infra_env",
    "isolated_env",
    "local_infra",
    "redis_cluster",
    "run_infra",
    "sample_transaction",
    "secured_infra",
    "tiny_bundle",
    "unique",
]
