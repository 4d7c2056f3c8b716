"""Shipped test fakes and helpers: run a stage, the loop and the checkpoint without a broker.

kafka    MemoryBroker, FakeConsumer, RecordingProducer (checks the transactional order)
stages   MemoryFeatureStore, FixedVersions, tiny_bundle
infra    FakeClock, unique names, free ports, sample transactions, the local infrastructure
"""

from __future__ import annotations

from stream.infra import run_infra
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
    "free_port",
    "infra_env",
    "isolated_env",
    "local_infra",
    "run_infra",
    "sample_transaction",
    "tiny_bundle",
    "unique",
]
