"""librdkafka's own log, through structlog and rate-limited.

A broker outage makes librdkafka report every failed connection attempt of every
client (over a thousand lines a minute): here each (facility, client) pair logs at
most once per `every_s`, and the next line that gets through says how many were
held back. Every client gets it through `KafkaSettings` (the `logger` setting).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("fraudstream.librdkafka")

# librdkafka passes syslog levels to the Python logger as logging levels.
EVERY_S = 10.0


class RateLimitedHandler(logging.Handler):
    """Forwards log records to structlog, at most one per key per `every_s`."""

    def __init__(self, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()
        self.forwarded = 0

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        fac = str(args[0]) if len(args) > 0 else "?"
        client = str(args[1]) if len(args) > 1 else "?"
        message = str(args[2]) if len(args) > 2 else record.getMessage()
        key = (fac, client)
        now = self.clock()
        with self._lock:
            last, held = self._last.get(key, (-1e18, 0))
            if now - last < self.every_s:
                self._last[key] = (last, held + 1)
                return
            self._last[key] = (now, 0)
        self.forwarded += 1
        level = "error" if record.levelno >= logging.ERROR else "warning" if record.levelno >= logging.WARNING else "info"
        getattr(log, level)("librdkafka", fac=fac, client=client, message=message[:500], held_back=held)


_logger: logging.Logger | None = None


def kafka_logger() -> logging.Logger:
    """The one logger every client of this process logs into."""
    global _logger
    if _logger is None:
        _logger = logging.getLogger("fraudstream.librdkafka")
        _logger.propagate = False
        _logger.setLevel(logging.INFO)
        _logger.addHandler(RateLimitedHandler())
    return _logger
