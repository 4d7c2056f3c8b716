"""A stop of the whole process (SIGSTOP, a frozen VM) is told from a slow call, and the loop
drops the batch it took across one: its partitions may have gone to a peer meanwhile."""

from __future__ import annotations

from collections import Counter

from confluent_kafka import Message

from stream.kafka.lifecycle import StopFlag
from stream.kafka.pause import PauseWatch
from stream.records import BatchResult
from stream.testing import FakeClock, MemoryBroker
from tests.unit.test_stages import CODEC, TOPICS, _fill, _loop, scorer


def test_ticks_on_time_are_no_stop_and_a_long_gap_is_reported_once() -> None:
    clock = FakeClock()
    watch = PauseWatch(3.0, clock)
    for _ in range(20):
        clock.advance(0.25)
        watch.tick()
    assert watch.take() is None
    clock.advance(4.0)  # neither the ticker nor anyone else ran
    watch.tick()
    clock.advance(0.25)
    watch.tick()
    assert watch.take() == 4.0
    assert watch.take() is None  # forgotten once taken


def test_the_time_since_the_last_tick_counts_once_the_ticker_runs() -> None:
    """Right after SIGCONT the loop may look before the ticker has ticked again."""
    clock = FakeClock()
    idle = PauseWatch(3.0, clock)
    clock.advance(10.0)
    assert idle.take() is None  # no ticker: a quiet caller is not a stop
    ticking = PauseWatch(3.0, clock)
    ticking.start(lambda: False)  # ticks once, its thread ends at once
    clock.advance(5.0)
    assert ticking.take() == 5.0
    clock.advance(1.0)
    assert ticking.take() is None


def test_for_session_takes_half_the_session_timeout() -> None:
    assert PauseWatch.for_session(6_000).limit_s == 3.0


class StopDuringProcess(PauseWatch):
    """Reports one stop of 20 s, as if SIGSTOP had come while the first batch was processed."""

    def __init__(self) -> None:
        super().__init__(5.0)
        self.stopped = False
        self.reported = False

    def start(self, running: object) -> None:
        pass

    def take(self) -> float | None:
        if self.stopped and not self.reported:
            self.reported = True
            return 20.0
        return None


def test_a_batch_processed_across_a_stop_is_dropped_and_decided_once_by_new_clients() -> None:
    broker = MemoryBroker()
    _fill(broker, 9)
    inner = scorer(deep_up=False)
    watch = StopDuringProcess()

    def process(msgs: list[Message]) -> BatchResult:
        watch.stopped = True
        return inner.process(msgs)

    loop, made = _loop(broker, process)
    loop.pause = watch
    loop.run(StopFlag(), max_idle_s=0.5)
    assert watch.reported and len(made) == 2  # the clients were rebuilt
    assert "commit_transaction" not in made[0].calls  # type: ignore[attr-defined]  # the batch was dropped
    ids = Counter(CODEC.decode_decision(m.value()).transaction_id for m in broker.records(TOPICS.decisions))
    assert len(ids) == 9 and set(ids.values()) == {1}
    assert broker.offsets[("g", TOPICS.transactions, 0)] == 9


class AlreadyTicking(PauseWatch):
    """Ticking since before the loop started (the loop's own start is skipped)."""

    def start(self, running: object) -> None:
        pass


def test_a_rebuild_for_another_reason_answers_a_stop_before_it() -> None:
    """A stop that is first met as a fenced client's error costs one rebuild, not two."""
    from confluent_kafka import KafkaError

    broker = MemoryBroker()
    _fill(broker, 9)
    broker.consume_errors.append(KafkaError(KafkaError._FATAL, "static consumer fenced"))
    loop, made = _loop(broker, scorer(deep_up=False).process)
    clock = FakeClock()
    watch = AlreadyTicking(5.0, clock)
    PauseWatch.start(watch, lambda: False)
    clock.advance(20.0)  # stood still; the first consume then reports the fenced member
    loop.pause = watch
    loop.run(StopFlag(), max_idle_s=0.5)
    assert len(made) == 2 and watch.take() is None
    ids = Counter(CODEC.decode_decision(m.value()).transaction_id for m in broker.records(TOPICS.decisions))
    assert len(ids) == 9 and set(ids.values()) == {1}
