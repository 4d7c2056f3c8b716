"""Helpers for tests and tools: a fake clock, unique names, free ports, sample
transactions, and a starter for the local infrastructure scripts."""

from __future__ import annotations

import gc
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.infra import run_infra


class FakeClock:
    """A monotonic clock tests move by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def unique(prefix: str) -> str:
    """A name no other test uses: topics, groups, namespaces."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class LocalInfra:
    """A broker and a Redis started by deploy/local/infra.sh."""

    bootstrap: str
    redis_url: str
    run_dir: Path | None  # None when pointing at services started elsewhere


def infra_env(run_dir: Path, kafka_port: int, redis_port: int) -> dict[str, str]:
    """Environment for infra.sh to use its own run folder and ports."""
    return {
        **os.environ,
        "FRAUDSTREAM_RUN_DIR": str(run_dir),
        "FRAUDSTREAM_KAFKA_PORT": str(kafka_port),
        "FRAUDSTREAM_KAFKA_CONTROLLER_PORT": str(free_port()),
        "FRAUDSTREAM_REDIS_PORT": str(redis_port),
    }


@contextmanager
def local_infra(run_dir: Path) -> Iterator[LocalInfra]:
    """Use FRAUDSTREAM_KAFKA_BOOTSTRAP / FRAUDSTREAM_REDIS_URL when set, else start our own."""
    bootstrap = os.environ.get("FRAUDSTREAM_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("FRAUDSTREAM_REDIS_URL")
    if bootstrap and redis_url:
        yield LocalInfra(bootstrap, redis_url, None)
        return
    kafka_port, redis_port = free_port(), free_port()
    env = infra_env(run_dir, kafka_port, redis_port)
    up = run_infra("up", env)
    if up.returncode != 0:
        raise RuntimeError(f"infra.sh up failed:\n{up.stdout}\n{up.stderr}")
    try:
        yield LocalInfra(f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0", run_dir)
    finally:
        # Clients still waiting for the collector (held in reference cycles) would otherwise
        # outlive the broker and log connection errors until the interpreter exits.
        gc.collect()
        run_infra("down", env)


def isolated_env(uid: str) -> dict[str, str]:
    """Settings that give the three services groups, transactional ids and a Redis namespace of
    their own, so runs sharing a broker and a Redis never meet."""
    env = {"FRAUDSTREAM_REDIS__NAMESPACE": uid}
    for stage in ("scorer", "deep", "labels"):
        env[f"FRAUDSTREAM_{stage.upper()}__GROUP_ID"] = f"{stage}-{uid}"
        env[f"FRAUDSTREAM_{stage.upper()}__TRANSACTIONAL_ID_PREFIX"] = f"{stage}-{uid}"
    return env


def sample_transaction(i: int, **overrides: Any) -> dict[str, Any]:
    """A valid Transaction record, different for each i."""
    tx: dict[str, Any] = {
        "transaction_id": f"tx-{i:08d}",
        "event_time": 1_767_225_600_000 + i * 1_000,  # 2026-01-01T00:00:00Z + i s
        "customer_id": f"c-{i % 97:05d}",
        "terminal_id": f"m-{i % 31:05d}",
        "amount": 1_000 + (i * 37) % 50_000,
        "currency": "EUR",
        "channel": ("POS", "ECOM", "ATM", "MOTO", "CONTACTLESS")[i % 5],
        "mcc": 5411,
        "device_id": None if i % 3 else f"d-{i % 11}",
        "ip": None,
        "latitude": 48.85 + (i % 7) * 0.01 if i % 4 else None,
        "longitude": 2.35 if i % 4 else None,
        "country": "FR",
    }
    tx.update(overrides)
    return tx
