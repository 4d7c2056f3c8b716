"""The peers a user would pick instead: stage 1 in Quix Streams (`bench/peer/quix.py`) and in
Bytewax (`bench/peer/flow.py`), the job itself shared (`bench/peer/job.py`), run by the bench
in their own environment (`bench/peer/setup.sh` makes .venv-peer)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv-peer" / "bin" / "python"

# name → (module, its guarantee, the stage 1 mode it is set against)
PEERS = {
    "quix": ("bench.peer.quix", "Quix Streams, exactly-once", "exactly_once"),
    "bytewax": ("bench.peer.flow", "Bytewax, at-least-once", "at_least_once"),
}


def available() -> bool:
    return (REPO / ".venv-peer" / ".installed").exists()


def run_peer(
    name: str, bootstrap: str, topic: str, out_topic: str, model_dir: Path, group: str, state_dir: Path, log: Path
) -> dict[str, Any]:
    """Run peer `name` over `topic` until it is done; its figures (records, seconds, per_s)."""
    cmd = [str(PYTHON), "-m", PEERS[name][0], bootstrap, topic, out_topic, str(model_dir), group, str(state_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "wb") as sink:
        subprocess.run(cmd, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, check=True, timeout=1800)
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{") and '"per_s"' in line:
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"the peer did not report; see {log}")
