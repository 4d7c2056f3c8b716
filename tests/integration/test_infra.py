"""deploy/local/infra.sh: idempotent up, clean down, clear errors."""

from __future__ import annotations

import os
import signal
import socket
import time
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


def test_up_after_a_broker_crash_keeps_its_topics_and_reset_is_explicit(tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    kafka_port, redis_port = free_port(), free_port()
    env = infra_env(tmp_path, kafka_port, redis_port)
    try:
        assert run_infra("up", env).returncode == 0
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_port}"})
        for future in admin.create_topics([NewTopic("kept.after.crash", 2, 1)]).values():
            future.result(30)
        del admin
        os.kill(int((tmp_path / "kafka.pid").read_text()), signal.SIGKILL)
        time.sleep(1)
        again = run_infra("up", env)
        assert again.returncode == 0, again.stderr
        assert "keeps its data" in again.stdout
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_port}"})
        assert "kept.after.crash" in admin.list_topics(timeout=30).topics
        del admin
        refused = run_infra("reset", env)
        assert refused.returncode != 0 and "stop the services first" in refused.stderr
    finally:
        run_infra("down", env)
    assert run_infra("reset", env).returncode == 0
    assert not (tmp_path / "kafka" / "data").exists()
