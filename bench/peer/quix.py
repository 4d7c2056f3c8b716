"""Stage 1 written the way a Quix Streams user would write it: the bench's first peer.

    .venv-peer/bin/python -m bench.peer.quix BOOTSTRAP IN_TOPIC OUT_TOPIC MODEL_DIR GROUP STATE_DIR

Run from the repository root, in its own environment (bench/peer/setup.sh: quixstreams pins
an older confluent-kafka). The job is `bench.peer.job`'s; how Quix runs it, idiomatically:
one message at a time through a StreamingDataFrame, exactly-once; the card state in Quix's
RocksDB state store keyed by the input key (the customer); the terminal state in a second
store after `group_by("terminal_id")` (a repartition topic), since state is per key;
changelog topics for recovery, as Quix makes them. Prints one JSON line: records, seconds
(first to last decided), per_s.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from quixstreams import Application, State
from quixstreams.models.serializers import Deserializer, SerializationContext, Serializer
from quixstreams.state.rocksdb import RocksDBOptions

from bench.peer.job import Job


class TransactionDeserializer(Deserializer):
    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job

    def __call__(self, value: bytes, ctx: SerializationContext) -> Any:
        return self.job.decode(value)


class DecisionSerializer(Serializer):
    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job

    def __call__(self, value: Any, ctx: SerializationContext) -> bytes:
        return self.job.encode(value)


def _bytes_dumps(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def main() -> None:
    bootstrap, in_topic, out_topic, model_dir, group, state_dir = sys.argv[1:7]
    job = Job(Path(model_dir))
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=state_dir,
        rocksdb_options=RocksDBOptions(dumps=_bytes_dumps, loads=lambda raw: raw),
        loglevel="WARNING",
    )
    source = app.topic(in_topic, value_deserializer=TransactionDeserializer(job), key_deserializer="str")
    sink = app.topic(out_topic, value_serializer=DecisionSerializer(job), key_serializer="str")

    def card_step(tx: dict[str, Any], state: State) -> dict[str, Any]:
        card, out = job.card_step(state.get("card"), tx)
        state.set("card", card)
        return out

    def terminal_step(tx: dict[str, Any], state: State) -> dict[str, Any]:
        ring, decision = job.terminal_step(state.get("ring"), tx)
        state.set("ring", ring)
        return decision

    sdf = app.dataframe(source)
    sdf = sdf.apply(card_step, stateful=True)
    sdf = sdf.group_by("terminal_id")
    sdf = sdf.apply(terminal_step, stateful=True)
    sdf.to_topic(sink, key=lambda d: d["transaction_id"])
    app.run(timeout=6.0)
    print(job.report(), flush=True)


if __name__ == "__main__":
    main()
