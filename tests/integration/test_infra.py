"""deploy/local/infra.sh: idempotent up, clean down, clear errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from stream.testing import free_port, infra_env, run_infra

pytestmark = pytest.mark.integration


def test_up_twice_then_down(tmp_path: Path) -> None:
    kafka_port, redis_port = free_port(), free_port()
    env = infra_env(tmp_path, kafka_port, redis_port)
    try:
        first = run_infra("up", env)
        assert first.returncode == 0, first.stderr
        assert f"kafka ready on 127.0.0.1:{kafka_port}" in first.stdout
        second = run_infra("up", env)
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stdout
        client = redis.Redis(port=redis_port)
        assert client.ping()
        client.close()
        status = run_infra("status", env)
        assert "kafka: running" in status.stdout
    finally:
        down = run_infra("down", env)
    assert down.returncode == 0, down.stderr
    assert "kafka stopped" in down.stdout
    assert "redis stopped" in down.stdout
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", kafka_port), timeout=1).close()


def test_taken_port_gives_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        result = run_infra("up", infra_env(tmp_path, free_port(), taken))
    run_infra("down", infra_env(tmp_path, free_port(), taken))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"port {taken} is taken" in lines[0]
