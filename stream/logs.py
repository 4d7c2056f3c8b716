"""structlog setup: key=value on a console, JSON in production; context is bound, never formatted in."""

from __future__ import annotations

import logging
import sys

import structlog


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
