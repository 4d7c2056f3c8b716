"""The bench counts CPU for the broker and Redis on its own ports, not another listener's."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from bench.processes import cpu_seconds, listener_pid, server_pids
from stream.testing import LocalInfra

pytestmark = pytest.mark.integration


def test_the_session_broker_and_redis_are_found_by_their_ports(infra: LocalInfra) -> None:
    found = server_pids(infra.bootstrap, infra.redis_url)
    if set(found) != {"broker", "redis"}:
        pytest.skip("broker or Redis not on this machine (taken from the environment)")
    assert b"kafka.Kafka" in Path(f"/proc/{found['broker']}/cmdline").read_bytes()
    assert b"redis-server" in Path(f"/proc/{found['redis']}/cmdline").read_bytes()
    assert cpu_seconds(found["broker"]) > 0


def test_a_listener_of_this_process_is_found_and_a_free_port_is_not() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listener_pid(port) == os.getpid()
    assert listener_pid(port) is None
