"""The latency floor: the pipeline's path with none of its work.

Two relays stand in for the stages and run in the stages' own loop (`StageLoop`: the same
micro-batches, checkpoint, clients, processing mode and settings). The first decodes each
transaction and answers it with a bare decision (route XGB_APPROVE, no features, no
reasons), or, for a stable share of transaction ids, passes the record unchanged to the
buffer topic; the second answers each buffered record with a bare decision (route DEEP).
No feature state, no model: decode, encode, Kafka.

Run at the same load, by the same reader, on the same broker, minutes apart from the
pipeline's own latency run, its latency is what Kafka, the loop and this host cost at that
time; the pipeline's latency above it is what the stages' work adds. `make bench` runs it
after the pipeline at each load; `python -m bench.ab --floor` interleaves it with the rounds.

    BENCH_RELAY_SHARE=0.18 python -m bench.relay first|second   (settings: the stages')
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from typing import cast

from confluent_kafka import Message

from models.decision import Outcome, Route
from stream.config import DeepSettings, ScorerSettings, Topics, load_settings
from stream.deadletter import dead_letter
from stream.kafka.codec import Codec
from stream.kafka.lifecycle import StopFlag
from stream.kafka.loop import Process, StageLoop
from stream.kafka.schema_registry import codec_for
from stream.logs import configure
from stream.records import BatchResult, Decided, Decision, Output, Transaction

SHARE_ENV = "BENCH_RELAY_SHARE"
INGEST_HEADER = "relay.ingest_ms"  # the transaction's own append time, carried through the buffer
_BUCKETS = 10_000


def through_buffer(transaction_id: str, share: float) -> bool:
    """Whether the first relay passes this transaction to the buffer topic: a stable `share` of ids."""
    return zlib.crc32(transaction_id.encode()) % _BUCKETS < share * _BUCKETS


def _answer(
    codec: Codec, topics: Topics, tx: Transaction, route: Route, ingest_ms: int, decided_ms: int
) -> tuple[Output, Decided]:
    """The bare decision on `tx` as a record, and what the loop's metrics count of it."""
    d = Decision.of(tx, Outcome.APPROVE, route, 0.0, reasons=(), source="relay", model_version="relay", arm="relay",
                    ingest_ms=ingest_ms, decided_ms=decided_ms)  # fmt: skip
    out = Output(topics.decisions, d.transaction_id.encode(), codec.encode_decision(d), [])
    return out, Decided(route.name, d.outcome.name, d.latency_ms)


def first(codec: Codec, topics: Topics, share: float, now_ms: Callable[[], int]) -> Process:
    """The first relay: a bare decision per transaction, or the record on to the buffer topic."""

    def process(messages: Sequence[Message]) -> BatchResult:
        batch = codec.decode_messages("Transaction", messages)
        outputs = [dead_letter(topics.dlq, f, "relay") for f in batch.errs]
        decided, counted = now_ms(), []
        for d in batch.oks:
            tx, src = cast(Transaction, d.value), d.source
            if through_buffer(tx["transaction_id"], share):
                outputs.append(Output(topics.ambiguous, src.key, d.raw, [(INGEST_HEADER, str(src.timestamp_ms).encode())]))
                continue
            out, count = _answer(codec, topics, tx, Route.XGB_APPROVE, src.timestamp_ms, decided)
            outputs.append(out)
            counted.append(count)
        return BatchResult(outputs, tuple(counted))

    return process


def second(codec: Codec, topics: Topics, now_ms: Callable[[], int]) -> Process:
    """The second relay: a bare decision per buffered transaction, timed from its first append."""

    def process(messages: Sequence[Message]) -> BatchResult:
        ingest = {(m.partition(), m.offset()): _ingest_ms(m) for m in messages}
        batch = codec.decode_messages("Transaction", messages)
        decided = now_ms()
        answers = [_answer(codec, topics, cast(Transaction, d.value), Route.DEEP, ingest[(d.source.partition, d.source.offset)],
                           decided) for d in batch.oks]  # fmt: skip
        outputs = [dead_letter(topics.dlq, f, "relay") for f in batch.errs] + [out for out, _ in answers]
        return BatchResult(outputs, tuple(count for _, count in answers))

    return process


def _ingest_ms(m: Message) -> int:
    """The first relay's header; the record's own timestamp when it has none."""
    for header in m.headers() or []:
        if header[0] == INGEST_HEADER and header[1] is not None:
            return int(header[1])
    return m.timestamp()[1]


def main(argv: list[str]) -> None:
    if argv not in (["first"], ["second"]):
        raise SystemExit("usage: python -m bench.relay first|second")
    s = load_settings()
    configure(s.log_format, s.log_level)
    codec, topics = codec_for(s.kafka), s.kafka.topics
    now_ms = lambda: int(time.time() * 1000)  # noqa: E731
    stage: ScorerSettings | DeepSettings
    if argv == ["first"]:
        stage, topic, process = s.scorer, topics.transactions, first(codec, topics, float(os.environ.get(SHARE_ENV, "0")), now_ms)
    else:
        stage, topic, process = s.deep, topics.ambiguous, second(codec, topics, now_ms)
    stop = StopFlag()
    stop.install()
    name = f"relay-{argv[0]}"
    StageLoop(name, s.kafka, stage.group_id, topic, f"{stage.transactional_id_prefix}-0", stage.batch, process).run(stop)


if __name__ == "__main__":
    main(sys.argv[1:])
