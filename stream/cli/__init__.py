"""The `fraudstream` command line: `app` with every command registered.

Commands live by what they serve: `pipeline` (infrastructure, services, demo), `models`
(train, evaluate, versions), `ops` (dead letters, backtest, replay, explain, shadow);
`app` holds the Typer applications and the one error handler.
"""

from __future__ import annotations

from stream.cli import models, ops, pipeline
from stream.cli.app import app

__all__ = ["app", "main", "models", "ops", "pipeline"]


def main() -> None:
    app()
