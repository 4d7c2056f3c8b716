"""The faults: how each is applied, held and released (see the package docstring)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from stream.config import Settings
from stream.infra import run_infra
from stream.kafka.calls import produce
from stream.kafka.codec import Codec
from stream.ops.chaos.report import FAULT_CLASSES, Ledger
from stream.ops.chaos.supervisor import Supervisor

STOP_HOLD_S = 16.0  # SIGSTOP past the session (6 s) and the transaction timeout (10 s)


class Faults:
    """The fault half of a chaos run; `Chaos` supplies the state declared here."""

    rng: random.Random
    short: bool
    model_root: Path
    version: str
    ledger: Ledger
    hostile_keys: set[bytes]
    codec: Codec
    events: list[dict[str, Any]]
    settings: Settings
    infra_env: dict[str, str]
    run_dir: Path

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
            produce(producer, topic, v, key)
        if producer.flush(60) != 0:
            raise RuntimeError("hostile records not acknowledged within 60 s")
