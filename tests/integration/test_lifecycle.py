"""A stage asked to stop exits within its grace period even when a client call never returns
(the label consumer once ignored SIGTERM for minutes, blocked in send_offsets_to_transaction)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

BLOCKED = """
import threading
from stream.kafka.lifecycle import StopFlag
stop = StopFlag(grace_s=1.0)
stop.install()
print("ready", flush=True)
threading.Event().wait()  # a client call that never returns, on the main thread
"""


def test_sigterm_exits_cleanly_within_the_grace_period_while_a_call_blocks() -> None:
    with subprocess.Popen([sys.executable, "-c", BLOCKED], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert time.monotonic() - began < 10
