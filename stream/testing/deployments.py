"""Local deployments beyond one plaintext broker and Redis, started by deploy/local/infra.sh
in a folder of their own on free loopback ports:

SecuredInfra   the broker's SASL_SSL listener (SCRAM-SHA-512) and a TLS-only Redis with an
               ACL user, with the settings that point fraudstream at them (`settings_env`)
RedisCluster   a Redis Cluster of 3 primaries and 3 replicas, whose nodes a test may kill
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.cluster import RedisCluster as ClusterClient

from stream.infra import run_infra
from stream.testing.infra import free_port, infra_env


def _up(env: dict[str, str], *only: str) -> None:
    result = run_infra("up", env, True, *only)
    if result.returncode != 0:
        raise RuntimeError(f"infra.sh up failed:\n{result.stdout}\n{result.stderr}")


@dataclass(frozen=True, slots=True)
class SecuredInfra:
    sasl_bootstrap: str  # the SASL_SSL listener
    plaintext_bootstrap: str  # the nodes' own listener, which no fraudstream client is given
    redis_url: str  # rediss://
    tls_dir: Path

    def secret(self, name: str) -> str:
        return (self.tls_dir / name).read_text().strip()

    def settings_env(self) -> dict[str, str]:
        """FRAUDSTREAM_* settings for every client: SASL_SSL with SCRAM, TLS with an ACL user."""
        return self.kafka_env() | self.redis_env()

    def kafka_env(self) -> dict[str, str]:
        return {
            "FRAUDSTREAM_KAFKA_BOOTSTRAP": self.sasl_bootstrap,
            "FRAUDSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "FRAUDSTREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "FRAUDSTREAM_KAFKA__SASL_USERNAME": "fraudstream",
            "FRAUDSTREAM_KAFKA__SASL_PASSWORD": self.secret("kafka.password"),
            "FRAUDSTREAM_KAFKA__SSL_CA_LOCATION": str(self.tls_dir / "ca.pem"),
        }

    def redis_env(self) -> dict[str, str]:
        ca = str(self.tls_dir / "ca.pem")
        return {
            "FRAUDSTREAM_REDIS_URL": self.redis_url,
            "FRAUDSTREAM_REDIS__USERNAME": "fraudstream",
            "FRAUDSTREAM_REDIS__PASSWORD": self.secret("redis.password"),
            "FRAUDSTREAM_REDIS__TLS_CA": ca,
        }


@contextmanager
def secured_infra(run_dir: Path, *only: str) -> Iterator[SecuredInfra]:
    """Start the secured broker and Redis (or `only` "redis"); stopped on exit."""
    kafka_port, sasl_port, redis_port = free_port(), free_port(), free_port()
    env = infra_env(run_dir, kafka_port, redis_port) | {
        "FRAUDSTREAM_SECURE": "1",
        "FRAUDSTREAM_KAFKA_SASL_PORT": str(sasl_port),
    }
    _up(env, *only)
    try:
        yield SecuredInfra(
            f"127.0.0.1:{sasl_port}", f"127.0.0.1:{kafka_port}", f"rediss://127.0.0.1:{redis_port}/0", run_dir / "tls"
        )
    finally:
        run_infra("down", env)


class RedisCluster:
    """Six redis-server processes in cluster mode; `kill` and `up` act on one node."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.ports = [free_port() for _ in range(6)]
        self.env = infra_env(run_dir, free_port(), self.ports[0]) | {
            "FRAUDSTREAM_REDIS_CLUSTER": "1",
            "FRAUDSTREAM_REDIS_PORTS": ",".join(map(str, self.ports)),
            "FRAUDSTREAM_REDIS_BUS_PORTS": ",".join(str(free_port()) for _ in range(6)),
        }
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"

    def up(self) -> None:
        _up(self.env, "redis")

    def down(self) -> None:
        """Stop every node at once: a test's cluster data is thrown away, and a controlled
        shutdown waits for replicas (seconds per node)."""
        for pid_file in self.run_dir.glob("redis-*.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)

    def client(self) -> ClusterClient:
        return ClusterClient.from_url(self.url)

    def primary_ports(self) -> list[int]:
        with contextlib.closing(self.client()) as c:
            return sorted(int(node.port) for node in c.get_primaries())  # type: ignore[no-untyped-call]

    def kill(self, port: int) -> None:
        node = self.ports.index(port) + 1
        os.kill(int((self.run_dir / f"redis-{node}.pid").read_text()), signal.SIGKILL)

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Until every node answers and reports cluster_state:ok."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if all(redis.Redis(port=p).cluster("info")["cluster_state"] == "ok" for p in self.ports):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the redis cluster did not become healthy")


@contextmanager
def redis_cluster(run_dir: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster(run_dir)
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.down()
