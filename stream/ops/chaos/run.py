"""A chaos run: infrastructure, services, feed, readers, the schedule, the count."""

from __future__ import annotations

import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from stream.config import Settings, load_settings
from stream.infra import run_infra
from stream.kafka.calls import produce
from stream.kafka.codec import Codec
from stream.kafka.topics import ensure_topics, pipeline_topics
from stream.ops.chaos.faults import Faults
from stream.ops.chaos.report import RECOVER_S, SETTLE_S, ChaosReport, FaultResult, Ledger
from stream.ops.chaos.supervisor import SERVICES, Supervisor
from stream.testing import free_port, infra_env, isolated_env, unique

LABEL_FIELDS = {"transaction_id", "customer_id", "terminal_id", "is_fraud", "label_time", "event_time", "source"}


class Chaos(Faults):
    def __init__(
        self,
        seed: int,
        minutes: float,
        work: Path,
        model_root: Path,
        model_version: str,
        events: list[dict[str, Any]],
        labels: list[dict[str, Any]],
        rate: float = 150.0,
        processing: str = "exactly_once",
        short: bool = False,
    ) -> None:
        work, model_root = work.resolve(), model_root.resolve()  # redis-server resolves paths after its chdir
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
        self.seed, self.minutes, self.short = seed, minutes, short
        self.work, self.rate, self.processing = work, rate, processing
        self.events, self.labels = events, labels
        self.model_root, self.version = work / "artifacts", model_version
        shutil.copytree(model_root / model_version, self.model_root / model_version)
        (self.model_root / "CURRENT").write_text(model_version)
        self.ledger = Ledger()
        self.hostile_keys: set[bytes] = set()
        self._stop = threading.Event()
        self.codec = Codec()

    # -- set-up ---------------------------------------------------------------------------
    @contextmanager
    def infra(self) -> Iterator[None]:
        run_dir = self.work / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.infra_env = infra_env(run_dir, free_port(), free_port())
        self.run_dir = run_dir
        up = run_infra("up", self.infra_env)
        if up.returncode != 0:
            raise RuntimeError(f"infra.sh up failed:\n{up.stdout}\n{up.stderr}")
        try:
            yield
        finally:
            run_infra("down", self.infra_env)

    def settings_env(self) -> dict[str, str]:
        uid = unique("chaos")
        kafka_port, redis_port = self.infra_env["FRAUDSTREAM_KAFKA_PORT"], self.infra_env["FRAUDSTREAM_REDIS_PORT"]
        topics = {k: f"{k}-{uid}" for k in ("transactions", "ambiguous", "decisions", "labels", "dlq", "shadow")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
        env.update(
            {
                "FRAUDSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
                "FRAUDSTREAM_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "FRAUDSTREAM_KAFKA__TOPICS": "{" + ", ".join(f"{k}: {v}" for k, v in topics.items()) + "}",
                "FRAUDSTREAM_KAFKA__PROCESSING": self.processing,
                "FRAUDSTREAM_KAFKA__SESSION_TIMEOUT_MS": "6000",
                "FRAUDSTREAM_KAFKA__TRANSACTION_TIMEOUT_MS": "10000",
                **isolated_env(uid),
                "FRAUDSTREAM_MODEL__DIR": str(self.model_root),
                "FRAUDSTREAM_MODEL__VERSION": "latest",
            }
        )
        return env

    # -- feed and readers -------------------------------------------------------------------
    def feed(self, settings: Settings) -> None:
        producer = Producer(settings.kafka.producer_config(None, client_id="chaos-feed"))
        topics, li, start = settings.kafka.topics, 0, time.monotonic()
        for i, ev in enumerate(self.events):
            if self._stop.is_set():
                break
            value = self.codec.encode("Transaction", ev)
            produce(
                producer,
                topics.transactions,
                value,
                ev["customer_id"].encode(),
                on_delivery=self.ledger.ack(ev["transaction_id"]),
            )
            while li < len(self.labels) and int(self.labels[li]["label_time"]) <= int(ev["event_time"]):
                lab = {k: v for k, v in self.labels[li].items() if k in LABEL_FIELDS}
                produce(
                    producer, topics.labels, self.codec.encode("Label", lab), lab["transaction_id"].encode(), on_delivery=None
                )
                li += 1
            ahead = (i + 1) / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
            producer.poll(0)
        while producer.flush(1.0) > 0 and not self._abandon.is_set():
            pass

    def read(self, settings: Settings, topic: str, on: Callable[[Message], None]) -> None:
        consumer = Consumer(settings.kafka.consumer_config(unique("chaos-reader")))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.kafka.partitions)])
        try:
            while not self._readers_stop.is_set():
                for m in consumer.consume(500, 0.5):
                    if m.error() is None:
                        on(m)
        finally:
            consumer.close()

    def on_decision(self, m: Message) -> None:
        batch = self.codec.decode_messages("Decision", [m])
        with self.ledger.lock:
            for d in batch.oks:
                self.ledger.decisions[d.value["transaction_id"]] += 1

    def on_dlq(self, m: Message) -> None:
        headers = dict(m.headers() or [])
        with self.ledger.lock:
            cls = headers.get("error.class") or b"?"
            self.ledger.dlq[cls.decode() if isinstance(cls, bytes) else cls] += 1
            self.ledger.dlq_keys.append(m.key())

    # -- faults -------------------------------------------------------------------------------
    def recover(self, released: float) -> float | None:
        deadline = released + RECOVER_S
        while time.monotonic() < deadline:
            now = time.monotonic()
            if self.ledger.current(now - SETTLE_S) and now - released >= SETTLE_S:
                return round(max(now - released - SETTLE_S, 0.0), 1)
            time.sleep(0.5)
        return None

    # -- the run --------------------------------------------------------------------------------
    def run(self, log: Callable[[str], None] = print) -> ChaosReport:
        report = ChaosReport(self.seed, self.minutes, self.processing)
        logs = self.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with self.infra():
            env = self.settings_env()
            self.settings = settings = load_settings(environ=env)
            ensure_topics(settings.kafka, pipeline_topics(settings.kafka))
            sup = Supervisor(env, logs)
            self._readers_stop, self._abandon = threading.Event(), threading.Event()
            topics = settings.kafka.topics
            readers = [
                threading.Thread(target=self.read, args=(settings, topics.decisions, self.on_decision), daemon=True),
                threading.Thread(target=self.read, args=(settings, topics.dlq, self.on_dlq), daemon=True),
            ]
            for t in readers:
                t.start()
            try:
                for name in SERVICES:
                    sup.start(name)
                deadline = time.monotonic() + 120
                while not all(sup.assigned(n) for n in SERVICES[:2]) and time.monotonic() < deadline:
                    time.sleep(0.5)
                feeder = threading.Thread(target=self.feed, args=(settings,), daemon=True)
                begin = time.monotonic()
                feeder.start()
                time.sleep(5)
                end_at = begin + self.minutes * 60
                for fault in self.schedule():
                    if time.monotonic() >= end_at and not self.short:
                        break
                    started = time.monotonic() - begin
                    log(f"[{started:7.1f} s] {fault}")
                    held = self.apply(fault, sup)
                    rec = self.recover(time.monotonic())
                    log(
                        f"           recovered in {rec} s"
                        if rec is not None
                        else f"           NOT recovered within {RECOVER_S:.0f} s"
                    )
                    report.faults.append(FaultResult(fault, round(started, 1), round(held, 1), rec))
                    time.sleep(self.rng.uniform(1, 4))
                self._stop.set()
                feeder.join(120)
                self._abandon.set()
                last = time.monotonic()
                while time.monotonic() - last < RECOVER_S and not self.ledger.current(time.monotonic() - SETTLE_S):
                    time.sleep(1)
                time.sleep(SETTLE_S + 2)  # late duplicates would show here
            finally:
                sup.stop_all()
                self._readers_stop.set()
                for t in readers:
                    t.join(30)
            self._count(report, begin, sup)
        return report

    def _count(self, report: ChaosReport, begin: float, sup: Supervisor) -> None:
        led = self.ledger
        sent = {t for _, t in led.acked}
        report.sent, report.undelivered = len(sent), led.refused
        report.decided = sum(1 for t in sent if led.decisions[t] > 0)
        report.missing = len(sent) - report.decided
        report.duplicated = sum(1 for t, n in led.decisions.items() if n > 1)
        report.dlq = dict(led.dlq)
        report.dlq_unexpected = sum(1 for k in led.dlq_keys if k not in self.hostile_keys)
        report.hostile_sent = len(self.hostile_keys)
        report.restarts = dict(sup.restarts)
        report.unexpected_exits = {n: [c for c in cs if c != -signal.SIGKILL] for n, cs in sup.exit_codes.items()}
        report.unexpected_exits = {n: cs for n, cs in report.unexpected_exits.items() if cs}
        report.stop_codes = dict(sup.stopped)
        starts = [begin + f.started_s for f in report.faults] + [float("inf")]
        for f, lo, hi in zip(report.faults, starts, starts[1:], strict=False):
            ids = [t for at, t in led.acked if lo <= at < hi]
            f.sent_during = len(ids)
            f.missing = sum(1 for t in ids if led.decisions[t] == 0)
            f.duplicated = sum(1 for t in set(ids) if led.decisions[t] > 1)
