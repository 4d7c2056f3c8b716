"""The chaos harness: the pipeline as an operator runs it, faults drawn from a seed,
and an independent count of what came out.

It starts a broker and a Redis of its own (deploy/local/infra.sh, free loopback
ports, its own run folder), the scorer, the deep worker and the label consumer as
processes under a small supervisor (an exited service is restarted after 1 s, as
systemd or Kubernetes would), and a feed at a fixed rate. Faults follow one another,
each applied, held, released, then given up to RECOVER_S to recover:

    kill_<service> / stop_<service>   SIGKILL, or SIGSTOP past the group's and the
                                      transaction's timeouts then SIGCONT
    stop_scorer_with_peer             a second scorer runs while the first is stopped
    broker_restart / redis_restart    SIGKILL, down for a while, started again
    bad_model                         a corrupted version promoted, then a good one
    scorer_scale                      a second scorer added, later removed
    hostile_input                     unreadable bytes, an oversized record, a known
                                      transaction id sent again under another customer

A read_committed reader counts decisions per transaction id throughout; a DLQ
reader checks that only hostile records were dead-lettered. The result is a table
(fault, count, missing, duplicated, worst time to recover) and a JSON file. A fault
has recovered when every transaction acknowledged by the broker more than
SETTLE_S before has its decision. Loopback only; bounded in time; stops by itself.

    python -m stream.chaos --seed 7 --minutes 20 --out out/chaos
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from stream.codec import Codec
from stream.config import Settings, load_settings
from stream.infra import run_infra
from stream.testing import free_port, infra_env, unique
from stream.topics import ensure_topics, pipeline_topics

RECOVER_S = 60.0  # a fault not recovered this long after its release fails the run
SETTLE_S = 3.0  # decisions may trail the broker's acknowledgement by this much and count as current
STOP_HOLD_S = 16.0  # SIGSTOP past the session (6 s) and the transaction timeout (10 s)
SERVICES = ("score-0", "deep-0", "labels-0")
LABEL_FIELDS = {"transaction_id", "customer_id", "terminal_id", "is_fraud", "label_time", "event_time", "source"}
FAULT_CLASSES = (
    "kill_score", "kill_deep", "kill_labels", "stop_score", "stop_deep", "stop_labels", "stop_scorer_with_peer",
    "broker_restart", "redis_restart", "bad_model", "scorer_scale", "hostile_input",
)  # fmt: skip


@dataclass
class FaultResult:
    fault: str
    started_s: float
    held_s: float
    recovered_s: float | None  # None: not within RECOVER_S
    sent_during: int = 0
    missing: int = 0
    duplicated: int = 0


@dataclass
class ChaosReport:
    seed: int
    minutes: float
    processing: str
    sent: int = 0
    decided: int = 0
    missing: int = 0
    duplicated: int = 0
    undelivered: int = 0
    dlq: dict[str, int] = field(default_factory=dict)
    dlq_unexpected: int = 0
    hostile_sent: int = 0
    restarts: dict[str, int] = field(default_factory=dict)
    unexpected_exits: dict[str, list[int]] = field(default_factory=dict)  # not from a SIGKILL fault
    stop_codes: dict[str, int] = field(default_factory=dict)  # exit codes on SIGTERM
    faults: list[FaultResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        dup_ok = self.duplicated == 0 or self.processing == "at_least_once"
        recovered = all(f.recovered_s is not None for f in self.faults)
        clean = not self.unexpected_exits and all(code == 0 for code in self.stop_codes.values())
        return self.missing == 0 and dup_ok and recovered and self.dlq_unexpected == 0 and clean

    def table(self) -> str:
        rows = [("fault", "count", "missing", "duplicated", "worst recovery s")]
        by: dict[str, list[FaultResult]] = {}
        for f in self.faults:
            by.setdefault(f.fault, []).append(f)
        for name, fs in sorted(by.items()):
            worst = [f.recovered_s for f in fs]
            shown = "NOT RECOVERED" if None in worst else f"{max(w for w in worst if w is not None):.1f}"
            rows.append((name, str(len(fs)), str(sum(f.missing for f in fs)), str(sum(f.duplicated for f in fs)), shown))
        rows.append(("all", str(len(self.faults)), str(self.missing), str(self.duplicated), ""))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        summary = (f"seed {self.seed}, {self.processing}: {self.sent} sent, {self.decided} decided, {self.missing} missing, "
                   f"{self.duplicated} duplicated, {self.undelivered} refused by the broker; DLQ {self.dlq} "
                   f"({self.dlq_unexpected} not hostile, {self.hostile_sent} hostile sent); "
                   f"restarts {self.restarts}, unexpected exits {self.unexpected_exits}, "
                   f"exit codes on SIGTERM {self.stop_codes}")  # fmt: skip
        return "\n".join([*lines, summary, "PASS" if self.ok else "FAIL"])


class Supervisor:
    """The services as processes; one that exits when not held is restarted after 1 s."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.wanted: set[str] = set()
        self.restarts: Counter[str] = Counter()
        self.exit_codes: dict[str, list[int]] = {}  # exits the supervisor restarted
        self.stopped: dict[str, int] = {}  # exit code when asked to stop (SIGTERM): 0 expected
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def start(self, name: str) -> None:
        kind, instance = name.split("-")
        with open(self.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(  # noqa: S603 - our own entry point
                [sys.executable, "-m", "stream", kind, "--instance", instance], env=self.env, stdout=log, stderr=log
            )
        self.wanted.add(name)
        if not self._thread.is_alive():
            self._thread.start()

    def remove(self, name: str) -> None:
        self.wanted.discard(name)
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                self.stopped[name] = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                self.stopped[name] = proc.wait()

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for name in list(self.wanted):
                proc = self.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    self.exit_codes.setdefault(name, []).append(proc.returncode)
                    time.sleep(1.0)
                    if name in self.wanted:
                        self.restarts[name] += 1
                        self.start(name)

    def assigned(self, name: str) -> bool:
        text = (self.logs / f"{name}.log").read_text(errors="replace") if (self.logs / f"{name}.log").exists() else ""
        return "partitions_assigned" in text and "partitions=[" in text

    def stop_all(self) -> None:
        self._stop.set()
        for name in list(self.procs):
            self.remove(name)


class Ledger:
    """What the feed sent (acknowledged by the broker) and what the reader saw decided."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: list[tuple[float, str]] = []  # (monotonic ack time, transaction id), in ack order
        self.refused = 0
        self.decisions: Counter[str] = Counter()
        self.dlq: Counter[str] = Counter()
        self.dlq_keys: list[bytes | None] = []

    def ack(self, tx_id: str) -> Callable[[KafkaError | None, Message], None]:
        def done(err: KafkaError | None, _msg: Message) -> None:
            with self.lock:
                if err is None:
                    self.acked.append((time.monotonic(), tx_id))
                else:
                    self.refused += 1

        return done

    def current(self, before: float) -> bool:
        """Has every transaction acknowledged before `before` a decision?"""
        with self.lock:
            return all(self.decisions[t] > 0 for at, t in self.acked if at < before)


class Chaos:
    def __init__(self, seed: int, minutes: float, work: Path, model_root: Path, model_version: str, events: list[dict[str, Any]],
                 labels: list[dict[str, Any]], rate: float = 150.0, processing: str = "exactly_once",
                 short: bool = False) -> None:  # fmt: skip
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
        env.update({
            "FRAUDSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
            "FRAUDSTREAM_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "FRAUDSTREAM_KAFKA__TOPICS": "{" + ", ".join(f"{k}: {v}" for k, v in topics.items()) + "}",
            "FRAUDSTREAM_KAFKA__PROCESSING": self.processing,
            "FRAUDSTREAM_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "FRAUDSTREAM_KAFKA__TRANSACTION_TIMEOUT_MS": "10000",
            "FRAUDSTREAM_SCORER__GROUP_ID": f"scorer-{uid}", "FRAUDSTREAM_SCORER__TRANSACTIONAL_ID_PREFIX": f"scorer-{uid}",
            "FRAUDSTREAM_DEEP__GROUP_ID": f"deep-{uid}", "FRAUDSTREAM_DEEP__TRANSACTIONAL_ID_PREFIX": f"deep-{uid}",
            "FRAUDSTREAM_LABELS__GROUP_ID": f"labels-{uid}", "FRAUDSTREAM_LABELS__TRANSACTIONAL_ID_PREFIX": f"labels-{uid}",
            "FRAUDSTREAM_REDIS__NAMESPACE": uid,
            "FRAUDSTREAM_MODEL__DIR": str(self.model_root),
            "FRAUDSTREAM_MODEL__VERSION": "latest",
        })  # fmt: skip
        return env

    # -- feed and readers -------------------------------------------------------------------
    def feed(self, settings: Settings) -> None:
        producer = Producer(settings.kafka.producer_config(None, client_id="chaos-feed"))
        topics, li, start = settings.kafka.topics, 0, time.monotonic()
        for i, ev in enumerate(self.events):
            if self._stop.is_set():
                break
            value = self.codec.encode("Transaction", ev)
            self._produce(producer, topics.transactions, value, ev["customer_id"].encode(), self.ledger.ack(ev["transaction_id"]))
            while li < len(self.labels) and int(self.labels[li]["label_time"]) <= int(ev["event_time"]):
                lab = {k: v for k, v in self.labels[li].items() if k in LABEL_FIELDS}
                self._produce(producer, topics.labels, self.codec.encode("Label", lab), lab["transaction_id"].encode(), None)
                li += 1
            ahead = (i + 1) / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
            producer.poll(0)
        while producer.flush(1.0) > 0 and not self._abandon.is_set():
            pass

    @staticmethod
    def _produce(producer: Producer, topic: str, value: bytes, key: bytes, cb: Any) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=cb)
                return
            except BufferError:
                producer.poll(0.1)

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
    def schedule(self) -> Iterator[str]:
        classes = list(FAULT_CLASSES)
        self.rng.shuffle(classes)
        yield from classes  # every class at least once
        if self.short:
            return
        while True:
            yield self.rng.choice(FAULT_CLASSES)

    def apply(self, fault: str, sup: Supervisor) -> float:
        """Apply and release one fault; returns how long it was held."""
        t0 = time.monotonic()
        if fault.startswith("kill_"):
            sup.signal(f"{fault[5:]}-0", signal.SIGKILL)  # the supervisor restarts it
        elif fault == "stop_scorer_with_peer":
            self._with_peer(sup, lambda: self._pause(sup, "score-0"))
        elif fault.startswith("stop_"):
            self._pause(sup, f"{fault[5:]}-0")
        elif fault == "broker_restart":
            self._restart("kafka", self.rng.uniform(5, 10 if self.short else 30))
        elif fault == "redis_restart":
            self._restart("redis", self.rng.uniform(3, 10))
        elif fault == "bad_model":
            bad = self.model_root / "v-broken"
            shutil.rmtree(bad, ignore_errors=True)
            shutil.copytree(self.model_root / self.version, bad)
            (bad / "xgb.ubj").write_bytes(b"{not a model")
            (self.model_root / "CURRENT").write_text("v-broken")
            time.sleep(10)
            (self.model_root / "CURRENT").write_text(self.version)
        elif fault == "scorer_scale":
            self._with_peer(sup, lambda: time.sleep(self.rng.uniform(5, 15)))
        elif fault == "hostile_input":
            self.hostile()
        return time.monotonic() - t0

    def _pause(self, sup: Supervisor, name: str) -> None:
        sup.signal(name, signal.SIGSTOP)
        time.sleep(STOP_HOLD_S)
        sup.signal(name, signal.SIGCONT)

    def _with_peer(self, sup: Supervisor, during: Callable[[], None]) -> None:
        sup.start("score-1")
        deadline = time.monotonic() + 60
        while not sup.assigned("score-1") and time.monotonic() < deadline:
            time.sleep(0.5)
        during()
        time.sleep(3)
        sup.remove("score-1")
        (sup.logs / "score-1.log").rename(sup.logs / f"score-1.{time.time_ns()}.log")

    def _restart(self, service: str, down_s: float) -> None:
        pid = int((self.run_dir / f"{service}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        time.sleep(down_s)
        up = run_infra("up", self.infra_env)
        if up.returncode != 0:
            raise RuntimeError(f"infra.sh up after a {service} kill failed:\n{up.stdout}\n{up.stderr}")

    def hostile(self) -> None:
        producer = Producer(
            self.settings.kafka.producer_config(None, client_id="chaos-hostile") | {"message.max.bytes": 2_000_000}
        )
        topic = self.settings.kafka.topics.transactions
        n = len(self.hostile_keys)
        values = [self.rng.randbytes(self.rng.randint(1, 200)) for _ in range(5)]
        values.append(b"\x00" + self.rng.randbytes(1_500_000))  # oversized: over the producer's 1 MB limit for a DLQ copy
        with self.ledger.lock:  # an id already decided: its second record can only be the repeat
            seen = next((t for _, t in reversed(self.ledger.acked[-5000:]) if self.ledger.decisions[t] > 0), None)
        if seen is not None:
            original = next(e for e in self.events if e["transaction_id"] == seen)
            values.append(self.codec.encode("Transaction", {**original, "customer_id": "c-hostile-other"}))
        for i, v in enumerate(values):
            key = f"hostile-{n + i}".encode()
            self.hostile_keys.add(key)
            self._produce(producer, topic, v, key, None)
        if producer.flush(60) != 0:
            raise RuntimeError("hostile records not acknowledged within 60 s")

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


def training_data(seed: int = 7) -> tuple[Any, Any]:
    """The simulation the chaos feed draws from (the e2e tier's: 2,500 customers, 35 days)."""
    from models.simulator import SimConfig, simulate

    sim = simulate(SimConfig(n_customers=2500, n_terminals=600, days=35, seed=seed))
    return sim.transactions, sim.labels


def prepare_model(root: Path) -> str:
    """Train the chaos run's model once into `root` (reused by later runs); returns its version."""
    from models.artifacts import save_bundle
    from models.training import TrainConfig, train_models

    if (root / "v1" / "manifest.json").exists():
        return "v1"
    tx, labels = training_data()
    result = train_models(tx, labels, TrainConfig(seed=7))
    save_bundle(root / "v1", result.booster, result.deep, result.mlp_only, result.thresholds, {**result.extra})
    return "v1"


def events_for(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The last n transactions of the simulation and the labels that fall among them."""
    from models.dataset import to_events, to_label_events

    tx, labels = training_data()
    part = tx.iloc[-n:]
    events = to_events(part)
    first = int(part["event_time"].min())
    lab = [x for x in to_label_events(labels) if int(x["label_time"]) >= first]
    return events, lab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=150.0, help="transactions per second")
    parser.add_argument("--short", action="store_true", help="every fault class once, then stop")
    parser.add_argument("--processing", choices=("exactly_once", "at_least_once"), default="exactly_once")
    parser.add_argument("--out", type=Path, default=Path("out/chaos"))
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: the services, the broker and Redis are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    print(f"chaos: seed {args.seed}, {args.minutes} min, {args.rate}/s, {args.processing}", flush=True)
    model_root = Path(".cache/chaos-model")
    version = prepare_model(model_root)
    n = int(args.rate * (args.minutes * 60 + 600)) if not args.short else int(args.rate * 900)
    events, labels = events_for(n)
    work = args.out / f"seed-{args.seed}-{time.strftime('%Y%m%d%H%M%S')}"
    chaos = Chaos(args.seed, args.minutes, work, model_root, version, events, labels, args.rate, args.processing, args.short)
    report = chaos.run(lambda line: print(line, flush=True))
    print(report.table())
    (work / "report.json").write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    print(f"chaos: report in {work / 'report.json'}, service logs in {work / 'logs'}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
