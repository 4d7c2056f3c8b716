"""Stage 1 written the way a Bytewax user would write it: the bench's second peer.

    .venv-peer/bin/python -m bench.peer.flow BOOTSTRAP IN_TOPIC OUT_TOPIC MODEL_DIR GROUP STATE_DIR

Run from the repository root, in the peers' environment (bench/peer/setup.sh). The job is
`bench.peer.job`'s; how Bytewax runs it, idiomatically: a dataflow of operators over the
KafkaSource (from the start of the topic to the end it finds, `tail=False`), `key_on` the
customer and `stateful_map` for the card, `key_on` the terminal and a second `stateful_map`
for its ring, the decision to the KafkaSink. Recovery on (a SQLite partition in STATE_DIR,
snapshots at each 10 s epoch, Bytewax's default): input offsets and state come back after a
crash, and the sink is not transactional, so the guarantee is at-least-once — the bench sets
it against stage 1 at-least-once. GROUP is unused (Bytewax keeps offsets in its recovery
store, not in a consumer group). Prints one JSON line: records, seconds (first to last
decided), per_s.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax._bytewax import cli_main
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir

from bench.peer.job import Job


def main() -> None:
    bootstrap, in_topic, out_topic, model_dir, _group, state_dir = sys.argv[1:7]
    job = Job(Path(model_dir))
    flow = Dataflow("stage1_peer")
    messages = op.input("transactions", flow, KafkaSource([bootstrap], [in_topic], tail=False))

    def decode(msg: KafkaSourceMessage[bytes, bytes]) -> dict[str, Any]:
        return job.decode(msg.value)

    txs = op.map("decode", messages, decode)
    by_customer = op.key_on("by_customer", txs, lambda tx: tx["customer_id"])
    carded = op.stateful_map("card", by_customer, job.card_step)
    by_terminal = op.key_on("by_terminal", op.map("unkey", carded, lambda kv: kv[1]), lambda tx: tx["terminal_id"])
    decided = op.stateful_map("terminal", by_terminal, job.terminal_step)

    def encode(kv: tuple[str, dict[str, Any]]) -> KafkaSinkMessage[bytes, bytes]:
        return KafkaSinkMessage(kv[1]["transaction_id"].encode(), job.encode(kv[1]))

    op.output("decisions", op.map("encode", decided, encode), KafkaSink([bootstrap], out_topic))
    recovery = Path(state_dir)
    recovery.mkdir(parents=True, exist_ok=True)
    init_db_dir(recovery, 1)
    cli_main(flow, recovery_config=RecoveryConfig(recovery))
    print(job.report(), flush=True)


if __name__ == "__main__":
    main()
