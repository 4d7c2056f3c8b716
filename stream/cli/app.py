"""The Typer applications, shared options, and the one place a command's error becomes an exit code.

Every command is registered through `command()`: a FraudstreamError it raises is printed as
one line and exits 1 (2 for a ConfigError, which means nothing was started).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from models.errors import FraudstreamError
from stream.config import Settings, load_settings
from stream.errors import ConfigError
from stream.logs import configure

app = typer.Typer(help="Real-time fraud detection on Kafka.", no_args_is_help=True, add_completion=False)
models_app = typer.Typer(help="Model versions.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead-lettered records: list, show, re-drive.", no_args_is_help=True)
state_app = typer.Typer(help="The feature state in Redis.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(dlq_app, name="dlq")
app.add_typer(state_app, name="state")
# Not on a terminal (a pipe, a log file, CI): no 80-column wrapping, so tables and error lines
# stay whole and greppable; COLUMNS still wins when set.
console = Console() if sys.stdout.isatty() or os.environ.get("COLUMNS") else Console(width=240, soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file")]
InstanceOpt = Annotated[str, typer.Option(help="stable instance id (part of the transactional id)")]
IdleOpt = Annotated[float | None, typer.Option(help="exit after this many idle seconds")]
FromOpt = Annotated[str, typer.Option("--from", help="record time: epoch ms or ISO-8601 (UTC)")]
ToOpt = Annotated[str | None, typer.Option("--to", help="record time, exclusive; default: now")]

P = ParamSpec("P")
R = TypeVar("R")


def command(on: typer.Typer, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Register a command on `on`; its FraudstreamError exits 1 (ConfigError: 2) with one line."""

    def register(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except FraudstreamError as exc:
                console.print(f"[red]error:[/red] {exc}")
                raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from exc

        on.command(name)(guarded)
        return guarded

    return register


@contextmanager
def progress(label: str) -> Iterator[Callable[[str], None]]:
    """A spinner on a terminal; elsewhere one timestamped line per step, so a long run in a pipe
    or a CI log shows where it is."""
    if console.is_terminal:
        with console.status(label) as status:
            yield status.update
        return
    started = time.monotonic()
    console.print(f"{label}: started")
    yield lambda message: console.print(f"{label} [{time.monotonic() - started:5.0f} s] {message}")
    console.print(f"{label}: done in {time.monotonic() - started:.0f} s")


def settings_from(config: Path | None) -> Settings:
    """Settings for a command (ConfigError names the key), with logging configured from them."""
    settings = load_settings(config)
    configure(settings.log_format, settings.log_level)
    return settings
