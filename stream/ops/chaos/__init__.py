"""The chaos harness: the pipeline as an operator runs it, faults drawn from a seed,
and an independent count of what came out.

It starts a broker and a Redis of its own (deploy/local/infra.sh, free loopback
ports, its own run folder), the scorer, the deep worker and the label consumer as
processes under a small supervisor (an exited service is restarted after 1 s, as
systemd or Kubernetes would), and a feed at a fixed rate. Faults follow one another,
each applied, held, released, then given up to RECOVER_S to recover:

    kill_<service> / stop_<service>   SIGKILL, or SIGSTOP past the group's and the
                                      transaction's timeouts then SIGCONT
    stop_scorer_with_peer             a second scorer runs while the first is stopped
    broker_restart / redis_restart    SIGKILL, down for a while, started again
    bad_model                         a corrupted version promoted, then a good one
    scorer_scale                      a second scorer added, later removed
    hostile_input                     unreadable bytes, an oversized record, a known
                                      transaction id sent again under another customer

A read_committed reader counts decisions per transaction id throughout; a DLQ
reader checks that only hostile records were dead-lettered. The result is a table
(fault, count, missing, duplicated, worst time to recover) and a JSON file. A fault
has recovered when every transaction acknowledged by the broker more than
SETTLE_S before has its decision. Loopback only; bounded in time; stops by itself.

    python -m stream.ops.chaos --seed 7 --minutes 20 --out out/chaos
"""

from __future__ import annotations

from stream.ops.chaos.report import FAULT_CLASSES, RECOVER_S, ChaosReport
from stream.ops.chaos.run import Chaos

__all__ = ["FAULT_CLASSES", "RECOVER_S", "Chaos", "ChaosReport"]
