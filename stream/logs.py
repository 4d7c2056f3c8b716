"""structlog setup: key=value on a console, JSON in production; context is bound, never formatted in."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import structlog


class Throttled:
    """Warnings at most every `every_s` per event: an outage would repeat them on every batch."""

    def __init__(self, log: Any, every_s: float = 10.0) -> None:
        self.log, self.every_s = log, every_s
        self._last: dict[str, float] = {}

    def __call__(self, event: str, reason: str) -> None:
        now = time.monotonic()
        if now - self._last.get(event, -1e18) >= self.every_s:
            self._last[event] = now
            self.log.warning(event, reason=reason)


class StderrLogger:
    """Writes each line to whatever `sys.stderr` is at that moment (a test's capture, a
    redirection made after configure), never to a stream that has since been closed."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _stderr_logger(*_args: object) -> StderrLogger:
    return StderrLogger()


def configure(fmt: str = "console", level: str = "info") -> None:
    """Configure structlog once, at the entry point."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )
