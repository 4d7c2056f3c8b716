"""A 3-broker KRaft cluster (deploy/local/infra.sh with FRAUDSTREAM_KAFKA_NODES=3): topics
replicated three ways with min.insync.replicas 2; the leader of an input partition is killed
mid-stream and started again — every transaction still gets exactly one decision."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from stream.testing import LocalInfra, free_port, infra_env, run_infra
from tests.e2e.conftest import TrainedModel, last_events, make_pipeline

pytestmark = pytest.mark.e2e


class Cluster:
    def __init__(self, run_dir: Path) -> None:
        ports, controllers = [free_port() for _ in range(3)], [free_port() for _ in range(3)]
        redis_port = free_port()
        self.run_dir = run_dir
        self.env = infra_env(run_dir, ports[0], redis_port) | {
            "FRAUDSTREAM_KAFKA_NODES": "3",
            "FRAUDSTREAM_KAFKA_PORTS": ",".join(map(str, ports)),
            "FRAUDSTREAM_KAFKA_CONTROLLER_PORTS": ",".join(map(str, controllers)),
        }
        self.infra = LocalInfra(",".join(f"127.0.0.1:{p}" for p in ports), f"redis://127.0.0.1:{redis_port}/0", run_dir)

    def up(self) -> None:
        result = run_infra("up", self.env)
        assert result.returncode == 0, result.stdout + result.stderr

    def kill(self, node: int) -> None:
        os.kill(int((self.run_dir / f"kafka-{node}.pid").read_text()), signal.SIGKILL)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "run")
    c.run_dir.mkdir()
    c.up()
    try:
        yield c
    finally:
        # The test's data is thrown away: SIGKILL instead of three controlled shutdowns (40 s).
        for pid_file in c.run_dir.glob("*.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_killing_an_input_partitions_leader_loses_and_repeats_nothing(
    cluster: Cluster, trained: TrainedModel, uid: str, tmp_path: Path
) -> None:
    pipeline = make_pipeline(cluster.infra, trained, uid, tmp_path, {"FRAUDSTREAM_KAFKA__REPLICATION_FACTOR": "3"})
    try:
        topic = pipeline.settings.kafka.topics.transactions
        admin = AdminClient(pipeline.settings.kafka.admin_config())
        meta = admin.list_topics(topic, timeout=10).topics[topic].partitions
        assert all(len(p.replicas) == 3 for p in meta.values())
        events = last_events(trained.sim, 6_000)
        pipeline.start_stages()
        feeder = pipeline.feed(events, 300.0)
        time.sleep(6)
        leader = meta[0].leader
        cluster.kill(leader)
        time.sleep(15)
        cluster.up()
        feeder.join()
        pipeline.exactly_once(events, timeout_s=180)
        after = admin.list_topics(topic, timeout=10).topics[topic].partitions
        assert all(len(p.isrs) >= 2 for p in after.values())
        assert all(p.poll() is None for p in pipeline.procs.values()), "a service exited: healing needed a restart"
    finally:
        assert set(pipeline.stop_all().values()) == {0}
