"""What the wire format costs per record, without Kafka or Redis: the bench's simulated
transactions through the codec, one record at a time as the stages do, against fastavro's
own reader and against one Avro container block (no call per record).

    python -m bench.codec [--records 20000]

The block read is the floor for anything that still builds one Python dict per record: if
it is close to the per-record reader, the time goes into the objects, not into the calls.
Then what stage 1 runs: a batch decoded by the codec, its plain records by the compiled
reader (`stream/kafka/reader.py`, the same dicts as fastavro's). The last rows decode whole
batches into columns with numpy (a sketch, `bench/columnar.py`, first checked to give
fastavro's records): what decoding costs without per-record objects.
"""

from __future__ import annotations

import argparse
import io
import timeit
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

from fastavro import reader, schemaless_reader, writer

from bench.columnar import decode_columns, to_records
from models.dataset import to_events
from models.decision import Outcome, Route
from models.featureset import FEATURE_NAMES
from models.simulator import SimConfig, simulate
from schemas import fixed_id, wire
from stream.kafka.codec import Codec, unframe
from stream.kafka.reader import read_transactions
from stream.records import Decision, Transaction

# Four reasons, as a flagged decision carries: (feature, value, contribution).
REASONS = [(name, 3.5, 0.8 - 0.2 * i) for i, name in enumerate(FEATURE_NAMES[:4])]


def per_record_us(fn: Callable[[], object], records: int, repeat: int = 5) -> float:
    """Best of `repeat` runs of fn (which handles `records` records), in µs per record."""
    return min(timeit.repeat(fn, number=1, repeat=repeat)) / records * 1e6


def _each_batch(read: Callable[[Any], object], batches: Sequence[Any]) -> None:
    for batch in batches:
        read(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 50, 500], help="batch sizes of the columnar sketch")
    args = parser.parse_args()
    codec = Codec()
    events = [{k: v for k, v in e.items() if k not in ("is_fraud", "scenario")}
              for e in to_events(simulate(SimConfig(seed=0)).transactions.iloc[-args.records :])]  # fmt: skip
    n = len(events)
    raws = [codec.encode("Transaction", e) for e in events]
    bodies = [unframe(r)[1] for r in raws]
    schema = wire("Transaction")
    block = io.BytesIO()
    writer(block, schema, events, codec="null", sync_interval=1 << 30)
    block_bytes = block.getvalue()
    txs = [cast(Transaction, e) for e in events]

    def decision(t: Transaction, outcome: Outcome, route: Route, p: float, reasons: list[tuple[str, float, float]]) -> Decision:
        return Decision.of(t, outcome, route, p, xgb_score=p, reasons=reasons, source="xgb", model_version="v1", arm="A",
                           ingest_ms=0, decided_ms=1)  # fmt: skip

    approve = [decision(t, Outcome.APPROVE, Route.XGB_APPROVE, 0.01, []) for t in txs]
    flagged = [decision(t, Outcome.BLOCK, Route.XGB_BLOCK, 0.97, REASONS) for t in txs]

    # The numpy sketch (bench/columnar.py) must give fastavro's records before its time counts.
    if to_records(*decode_columns(bodies)) != [schemaless_reader(io.BytesIO(b), schema, None) for b in bodies]:
        raise SystemExit("the columnar sketch does not decode as fastavro does")
    rows = [
        ("decode a transaction (Codec.decode: framing, reader, contract checks)",
         per_record_us(lambda: [codec.decode("Transaction", r) for r in raws], n)),
        ("  fastavro's reader alone, one call per record",
         per_record_us(lambda: [schemaless_reader(io.BytesIO(b), schema, None) for b in bodies], n)),
        ("  the same records as one container block (no call per record)",
         per_record_us(lambda: list(reader(io.BytesIO(block_bytes))), n)),
    ]  # fmt: skip
    read_ours = partial(read_transactions, schema_id=fixed_id("Transaction"))
    for size in args.sizes:
        framed: list[list[bytes | None]] = [list(raws[i : i + size]) for i in range(0, n - size + 1, size)]
        done = len(framed) * size
        rows.append((f"decode a batch of {size} (Codec.decode_values: the compiled reader, stream/kafka/reader.py)",
                     per_record_us(partial(_each_batch, partial(codec.decode_values, "Transaction"), framed), done)))  # fmt: skip
        rows.append((f"  the reader alone, batches of {size} (read_transactions)",
                     per_record_us(partial(_each_batch, read_ours, framed), done)))  # fmt: skip
    for size in args.sizes:
        batches = [bodies[i : i + size] for i in range(0, n - size + 1, size)]
        rows.append((f"  columns in numpy, batches of {size} (bench/columnar.py)",
                     per_record_us(partial(_each_batch, decode_columns, batches), len(batches) * size)))  # fmt: skip
    rows += [
        ("encode an APPROVE decision (Codec.encode)", per_record_us(lambda: [codec.encode_decision(d) for d in approve], n)),
        ("encode a decision with four reasons", per_record_us(lambda: [codec.encode_decision(d) for d in flagged], n)),
    ]
    print(f"{n:,} simulated transactions, {sum(map(len, raws)) / n:.0f} bytes each on the wire")
    width = max(len(label) for label, _ in rows)
    for label, us in rows:
        print(f"{label.ljust(width)}  {us:5.2f} µs per record")


if __name__ == "__main__":
    main()
