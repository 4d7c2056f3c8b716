"""A stage process's life around the loop: the stop flag, the watchdog, its figures.

SIGTERM/SIGINT set the StopFlag; the loop checks it between batches. A shutdown that
cannot finish within SHUTDOWN_GRACE_S (a broker that does not answer) exits anyway: an
open transaction is aborted by the broker or by the next instance. The watchdog is the
last resort behind the loop's client resets: a loop that has not turned for WATCHDOG_S
(a client call blocking beyond every timeout) exits 70 for its supervisor to restart it.
"""

from __future__ import annotations

import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import structlog
from confluent_kafka import KafkaException

log = structlog.get_logger("fraudstream.stage")

SHUTDOWN_GRACE_S = 30.0
WATCHDOG_S = 120.0
WATCHDOG_EXIT = 70


@dataclass
class StageStats:
    batches: int = 0
    records: int = 0
    outputs: int = 0
    retries: int = 0
    started: float = field(default_factory=time.monotonic)
    first_record: float | None = None  # clock time of the first consumed batch
    last_commit: float | None = None  # clock time of the last committed batch

    @property
    def active_s(self) -> float:
        """First record consumed → last batch committed: the basis of throughput figures."""
        if self.first_record is None or self.last_commit is None:
            return 0.0
        return self.last_commit - self.first_record


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not getrusage: on Linux its ru_maxrss
    starts from the parent's peak after fork, so a child of a big process looks big."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass  # not Linux: fall back below
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StopFlag:
    """Set by SIGTERM/SIGINT (or by hand); the loop checks it between batches. Once set by a
    signal, the process exits within `grace_s` even if a client call does not return."""

    def __init__(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        self._event = threading.Event()
        self.grace_s = grace_s

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def install(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("stop_requested", signal=signal.Signals(signum).name)
            if not self._event.is_set():
                threading.Thread(target=self._deadline, name="shutdown-deadline", daemon=True).start()
            self._event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _deadline(self) -> None:
        time.sleep(self.grace_s)
        log.error("shutdown_forced", after_s=self.grace_s, reason="a client call did not return; the open transaction is aborted")
        os._exit(0)


def start_watchdog(running: Callable[[], bool], last_turn: Callable[[], float], limit_s: float = WATCHDOG_S) -> None:
    """Exit the process (WATCHDOG_EXIT) once `last_turn()` is more than `limit_s` ago, while `running()`."""

    def watch() -> None:
        while running():
            time.sleep(5.0)
            stuck = time.monotonic() - last_turn()
            if stuck > limit_s and running():
                log.error("loop_stuck_exiting", stuck_s=round(stuck), exit_code=WATCHDOG_EXIT)
                os._exit(WATCHDOG_EXIT)

    threading.Thread(target=watch, name="loop-watchdog", daemon=True).start()


def quietly(logger: structlog.typing.FilteringBoundLogger, *calls: tuple[str, Callable[[], object]]) -> None:
    """Each call; a failure is logged under its event, never raised (closing clients that may be fenced)."""
    for event, call in calls:
        try:
            call()
        except (KafkaException, RuntimeError) as exc:
            logger.warning(event, error=str(exc)[:300])
