"""What a chaos run found: per fault, what was sent, missing, duplicated, the time to recover;
and the ledger of what the broker acknowledged."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message

RECOVER_S = 60.0  # a fault not recovered this long after its release fails the run
SETTLE_S = 3.0  # decisions may trail the broker's acknowledgement by this much and count as current
FAULT_CLASSES = (
    "kill_score",
    "kill_deep",
    "kill_labels",
    "stop_score",
    "stop_deep",
    "stop_labels",
    "stop_scorer_with_peer",
    "broker_restart",
    "redis_restart",
    "bad_model",
    "scorer_scale",
    "hostile_input",
)


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
        summary = (
            f"seed {self.seed}, {self.processing}: {self.sent} sent, {self.decided} decided, {self.missing} missing, "
            f"{self.duplicated} duplicated, {self.undelivered} refused by the broker; DLQ {self.dlq} "
            f"({self.dlq_unexpected} not hostile, {self.hostile_sent} hostile sent); "
            f"restarts {self.restarts}, unexpected exits {self.unexpected_exits}, "
            f"exit codes on SIGTERM {self.stop_codes}"
        )
        return "\n".join([*lines, summary, "PASS" if self.ok else "FAIL"])


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
