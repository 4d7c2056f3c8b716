"""The local infrastructure scripts (deploy/local/infra.sh), callable from Python."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INFRA_SCRIPT = REPO / "deploy" / "local" / "infra.sh"


def run_infra(
    command: str, env: Mapping[str, str] | None = None, capture: bool = True, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run infra.sh up|down|status|prepare [args]; the caller checks the return code."""
    return subprocess.run(  # noqa: S603 - our own script, fixed arguments
        ["/bin/bash", str(INFRA_SCRIPT), command, *args],
        env=dict(env) if env is not None else None,
        capture_output=capture,
        text=True,
        timeout=600,
        check=False,
    )
