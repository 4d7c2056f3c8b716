"""The services as processes under a small supervisor, as systemd or Kubernetes would run them."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

SERVICES = ("score-0", "deep-0", "labels-0")


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
