"""The short chaos schedule (`make test`): every fault class once against the three services
as processes, a broker and a Redis of the run's own, and an independent read_committed count.
The long schedule is `make chaos` (20 minutes, seed printed)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from models.dataset import to_label_events
from stream.ops.chaos import FAULT_CLASSES, RECOVER_S, Chaos
from tests.e2e.conftest import TrainedModel, last_events

pytestmark = pytest.mark.e2e


def test_short_chaos_schedule_loses_nothing_and_decides_nothing_twice(trained: TrainedModel, tmp_path: Path) -> None:
    events = last_events(trained.sim, 40_000)
    first = events[0]["event_time"]
    labels = [lab for lab in to_label_events(trained.sim.labels) if lab["label_time"] >= first]
    chaos = Chaos(20261201, 0.0, tmp_path / "chaos", trained.root, trained.version, events, labels, rate=100.0, short=True)
    report = chaos.run()
    print(report.table())
    (tmp_path / "report.json").write_text(json.dumps(asdict(report), indent=2))
    assert sorted({f.fault for f in report.faults}) == sorted(FAULT_CLASSES)
    assert report.sent > 10_000 and report.undelivered == 0
    assert report.missing == 0, report.table()
    assert report.duplicated == 0, report.table()
    assert all(f.recovered_s is not None and f.recovered_s <= RECOVER_S for f in report.faults), report.table()
    # Only the hostile records were dead-lettered: unreadable bytes, the oversized one, the repeated id.
    assert report.dlq_unexpected == 0 and sum(report.dlq.values()) == report.hostile_sent, report.table()
    assert report.dlq.get("DuplicateTransaction") == 1
    assert not report.unexpected_exits and set(report.stop_codes.values()) == {0}, report.table()
    assert report.ok
