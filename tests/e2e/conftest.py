"""The whole pipeline as processes against the real broker and Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from models import xgb as xgbm
from models.artifacts import load_bundle, save_bundle
from models.dataset import to_events
from models.features import FeatureEngine
from models.offline import OfflineFeatures
from models.simulator import SimConfig, Simulation, simulate
from models.training import TrainConfig, train_models
from stream.config import Settings, load_settings
from stream.kafka.codec import Codec
from stream.kafka.topics import ensure_topics, pipeline_topics
from stream.ops.feed import produce_stream
from stream.testing import LocalInfra, free_port, infra_env, isolated_env, run_infra

# Enough customers that 20,000 transactions span less than the 7-day label delay: terminal
# features then do not depend on how far one partition runs ahead of another in a burst.
SIM = SimConfig(n_customers=2500, n_terminals=600, days=35, seed=7)


@dataclass(frozen=True)
class TrainedModel:
    root: Path
    version: str
    sim: Simulation


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    sim = simulate(SIM)
    result = train_models(sim.transactions, sim.labels, TrainConfig(seed=7, replicates=0))
    root = tmp_path_factory.mktemp("artifacts")
    save_bundle(root / "v1", result.booster, result.deep, result.mlp_only, result.thresholds, {**result.extra})
    return TrainedModel(root, "v1", sim)


@dataclass
class Pipeline:
    """One isolated pipeline: its own topics, groups, Redis namespace and processes."""

    env: dict[str, str]
    settings: Settings
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self, kind: str, instance: str = "0", args: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        name = f"{kind}-{instance}"
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise RuntimeError(f"{name} is still running")
        # The child keeps its own copy of the descriptor; ours closes at once.
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "stream", kind, "--instance", instance, *args],
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=log,
            )
        self.procs[name] = proc
        return proc

    def start_stages(self, score_env: dict[str, str] | None = None, deep_env: dict[str, str] | None = None) -> None:
        """Scorer and deep worker; returns once both own partitions and one health check
        has seen the worker's heartbeat, so the band goes to the deep stage from the start."""
        self.start("score", env=score_env)
        self.start("deep", env=deep_env)
        wait_assigned(self, "score-0")
        wait_assigned(self, "deep-0")
        time.sleep(1.0)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        proc = self.procs[name]
        proc.send_signal(sig)
        return proc.wait(60)

    def stop_all(self) -> dict[str, int]:
        codes = {}
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            codes[name] = proc.wait(60)
        return codes

    def produce(self, events: list[dict[str, Any]], rate: float = 0.0) -> None:
        produce_stream(self.settings.kafka, events, rate)

    def feed(self, events: list[dict[str, Any]], rate: float) -> Feeder:
        """`produce` in the background (started); its join() re-raises what the feed raised."""
        feeder = Feeder(lambda: self.produce(events, rate))
        feeder.start()
        return feeder

    def exactly_once(self, events: list[dict[str, Any]], timeout_s: float = 180.0) -> list[dict[str, Any]]:
        """The decisions of `events`, asserting one per transaction. For a missing one the
        failure says where it is in the input topic and where the scorer's committed offset
        stands, which tells a lost input from a skipped offset from a slow pipeline."""
        decisions = self.decisions(len(events), timeout_s)
        ids = Counter(d["transaction_id"] for d in decisions)
        wanted = {e["transaction_id"] for e in events}
        missing = wanted - set(ids)
        if missing:
            topic = self.settings.kafka.topics.transactions
            inputs = Codec().decode_messages("Transaction", self.read(topic, len(events), timeout_s=30, settle_s=1)).oks
            found = {d.value["transaction_id"]: (d.source.partition, d.source.offset) for d in inputs
                     if d.value["transaction_id"] in missing}  # fmt: skip
            consumer = Consumer(self.settings.kafka.consumer_config(self.settings.scorer.group_id))
            committed = consumer.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)
            marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(4)]
            consumer.close()
            raise AssertionError(
                f"{len(missing)} transactions without a decision: {sorted(missing)[:10]}; in the input topic at "
                f"(partition, offset) {found} ({len(inputs)} records read back; per partition (first, next) offsets "
                f"{marks}); scorer's committed offsets {[(tp.partition, tp.offset) for tp in committed]}"
            )
        assert set(ids) == wanted, f"decisions for transactions never sent: {sorted(set(ids) - wanted)[:10]}"
        twice = [i for i, n in ids.items() if n > 1]
        assert not twice, f"{len(twice)} duplicated decisions: {twice[:10]}; {self.copies(set(twice[:5]), len(decisions))}"
        return decisions

    def copies(self, ids: set[str], expected: int) -> str:
        """Where each copy of `ids` sits in the decisions topic, and what the stages logged about
        their batches and partitions: what a duplicate's cause is read from."""
        msgs = self.read(self.settings.kafka.topics.decisions, expected, timeout_s=30, settle_s=1)
        where = [(d.value["transaction_id"], d.value["route"], d.value["decided_at"], d.source.partition, d.source.offset)
                 for d in Codec().decode_messages("Decision", msgs).oks if d.value["transaction_id"] in ids]  # fmt: skip
        events = re.compile(r"batch_retry|clients_reset|partitions_(assigned|revoked|lost)|committed_offsets|TXNERR")
        logs = {p.stem: [line[:240] for line in p.read_text().splitlines() if events.search(line)][-12:]
                for p in sorted(self.logs.glob("*.log"))}  # fmt: skip
        return f"(id, route, decided_at, partition, offset): {where}; the stages' logs: {logs}"

    def produce_raw(self, values: list[bytes | None]) -> None:
        producer = Producer(self.settings.kafka.producer_config(None))
        for i, v in enumerate(values):
            producer.produce(self.settings.kafka.topics.transactions, value=v, key=f"bad-{i}".encode())
        assert producer.flush(30) == 0

    def read(self, topic: str, expected: int, timeout_s: float = 180.0, settle_s: float = 3.0) -> list[Message]:
        """Every committed record of `topic`: waits for `expected`, then `settle_s` more for extras."""
        consumer = Consumer(self.settings.kafka.consumer_config(f"reader-{time.time_ns()}"))
        consumer.subscribe([topic])
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        settle_until: float | None = None
        try:
            while time.monotonic() < (settle_until or deadline):
                for m in consumer.consume(1000, 0.5):
                    if m.error() is None:
                        out.append(m)
                if settle_until is None and len(out) >= expected:
                    settle_until = time.monotonic() + settle_s
                for name, proc in self.procs.items():
                    code = proc.poll()
                    if code not in (None, 0, -signal.SIGKILL, -signal.SIGTERM):
                        raise RuntimeError(f"{name} exited with {code}; see {self.logs / (name + '.log')}")
        finally:
            consumer.close()
        return out

    def decisions(self, expected: int, timeout_s: float = 180.0, settle_s: float = 3.0) -> list[dict[str, Any]]:
        msgs = self.read(self.settings.kafka.topics.decisions, expected, timeout_s, settle_s)
        batch = Codec().decode_messages("Decision", msgs)
        assert batch.errs == []
        return [d.value for d in batch.oks]


class Feeder(threading.Thread):
    """A feed running beside the test; a failed feed fails the test at join()."""

    def __init__(self, target: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self._work = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # handed to the test thread by join()
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


def make_pipeline(
    infra: LocalInfra, trained: TrainedModel, uid: str, tmp_path: Path, overrides: dict[str, str] | None = None
) -> Pipeline:
    topics = {k: f"{k}-{uid}" for k in ("transactions", "ambiguous", "decisions", "labels", "dlq", "shadow")}
    flow = "{" + ", ".join(f"{k}: {v}" for k, v in topics.items()) + "}"
    env = {
        **os.environ,
        "FRAUDSTREAM_KAFKA_BOOTSTRAP": infra.bootstrap,
        "FRAUDSTREAM_REDIS_URL": infra.redis_url,
        "FRAUDSTREAM_KAFKA__TOPICS": flow,
        "FRAUDSTREAM_KAFKA__SESSION_TIMEOUT_MS": "6000",
        **isolated_env(uid),
        "FRAUDSTREAM_MODEL__DIR": str(trained.root),
        "FRAUDSTREAM_MODEL__VERSION": trained.version,
        **(overrides or {}),
    }
    settings = load_settings(environ=env)
    ensure_topics(settings.kafka, pipeline_topics(settings.kafka), partitions=4)
    return Pipeline(env, settings, tmp_path)


@pytest.fixture
def pipeline(infra: LocalInfra, trained: TrainedModel, uid: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = make_pipeline(infra, trained, uid, tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


@dataclass
class OwnInfra:
    """A broker and Redis of one test's own, which it may kill and start again."""

    infra: LocalInfra
    env: dict[str, str]
    run_dir: Path

    def kill(self, service: str) -> None:
        os.kill(int((self.run_dir / f"{service}.pid").read_text()), signal.SIGKILL)

    def up(self) -> None:
        result = run_infra("up", self.env)
        assert result.returncode == 0, result.stderr


@pytest.fixture
def own_infra(tmp_path: Path) -> Iterator[OwnInfra]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    kafka_port, redis_port = free_port(), free_port()
    env = infra_env(run_dir, kafka_port, redis_port)
    own = OwnInfra(LocalInfra(f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0", run_dir), env, run_dir)
    own.up()
    try:
        yield own
    finally:
        run_infra("down", env)


@pytest.fixture
def own_pipeline(own_infra: OwnInfra, trained: TrainedModel, uid: str, tmp_path: Path) -> Iterator[Pipeline]:
    """A pipeline on the test's own broker and Redis (`own_infra`)."""
    p = make_pipeline(own_infra.infra, trained, uid, tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


class RedisServer:
    """A redis-server of a test's own, so the test may stop and restart it."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client = redis.Redis(port=self.port)
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_assigned(pipeline: Pipeline, name: str, after: int = 0, timeout_s: float = 60) -> None:
    """Until `name` has logged a non-empty assignment (more than `after` of them)."""
    deadline = time.monotonic() + timeout_s
    log = pipeline.logs / f"{name}.log"
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if len(re.findall(r"partitions_assigned .*partitions=\[\d", text)) > after:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} got no partitions within {timeout_s} s")


def last_events(sim: Simulation, n: int) -> list[dict[str, Any]]:
    """The last n transactions of a simulation, time-ordered."""
    return to_events(sim.transactions.iloc[-n:])


def offline_xgb_scores(trained: TrainedModel, events: list[dict[str, Any]]) -> np.ndarray:
    """XGBoost's probability for each event, its features computed offline from an empty state
    (the training code path): what stage 1 must find from a fresh Redis namespace."""
    bundle = load_bundle(trained.root / trained.version)
    x = OfflineFeatures(FeatureEngine(bundle.delay_days)).run(events)
    return xgbm.sigmoid(xgbm.margins(bundle.booster, x))
