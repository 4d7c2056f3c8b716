"""Each feature pinned on hand-built event sequences."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.card import ring_before
from models.features import FeatureEngine
from models.featureset import FEATURE_NAMES, RING_DAYS, RING_RECORDS, ring_counts, stable_hashes
from models.offline import OfflineFeatures
from models.units import DAY_MS, HOUR_MS

T0 = 1_767_225_600_000 + 3 * DAY_MS  # 2026-01-04T00:00Z, a Sunday
IDX = {n: i for i, n in enumerate(FEATURE_NAMES)}


def ev(i: int, t: int, amount: int = 10_000, customer: str = "c1", terminal: str = "m1", **kw: object) -> dict:
    base = {"transaction_id": f"t{i}", "event_time": t, "customer_id": customer, "terminal_id": terminal,
            "amount": amount, "channel": "POS", "mcc": 5411, "device_id": None, "latitude": None, "longitude": None}  # fmt: skip
    base.update(kw)
    return base


def run(events: list[dict], labels: list[dict] | None = None, delay: int = 7) -> np.ndarray:
    return OfflineFeatures(FeatureEngine(delay)).run(events, labels or [], batch=1)


def f(row: np.ndarray, name: str) -> float:
    return float(row[IDX[name]])


def test_first_transaction_of_a_customer() -> None:
    (row,) = run([ev(0, T0 + 10 * HOUR_MS, amount=2_550)])
    assert f(row, "amount") == pytest.approx(25.5)
    assert f(row, "log_amount") == pytest.approx(math.log1p(25.5))
    assert f(row, "hour") == pytest.approx(10.0)
    assert f(row, "is_weekend") == 1.0
    assert f(row, "is_night") == 0.0
    assert f(row, "cust_n_30d") == 0.0
    assert math.isnan(f(row, "cust_mean_30d"))
    assert math.isnan(f(row, "secs_since_prev"))
    assert math.isnan(f(row, "amount_over_mean_30d"))
    assert f(row, "channel_pos") == 1.0 and f(row, "channel_ecom") == 0.0


def test_customer_windows_include_the_edge_only_inside() -> None:
    t = T0 + 12 * HOUR_MS  # day D = T0 // DAY_MS
    events = [
        ev(0, T0 - 29 * DAY_MS - 1, amount=100),  # the last ms of day D-30: outside 30d (days D-29..D)
        ev(1, T0 - 29 * DAY_MS, amount=200),  # the first ms of day D-29: inside 30d
        ev(2, T0 - 6 * DAY_MS - 1, amount=300),  # the last ms of day D-7: outside 7d
        ev(3, T0 - 6 * DAY_MS, amount=400),  # the first ms of day D-6: inside 7d
        ev(4, t - DAY_MS, amount=500),  # exactly 1 day before: outside 1d, which is exact: (t-1d, t]
        ev(5, t - HOUR_MS + 1, amount=600),  # inside 1h
        ev(6, t, amount=1000),
    ]
    row = run(events)[-1]
    assert f(row, "cust_n_1h") == 1
    assert f(row, "cust_n_1d") == 1
    assert f(row, "cust_n_7d") == 3
    assert f(row, "cust_n_30d") == 5
    assert f(row, "cust_mean_30d") == pytest.approx(4.0)
    assert f(row, "amount_over_mean_30d") == pytest.approx(10.0 / 4.0)
    assert f(row, "secs_since_prev") == pytest.approx((HOUR_MS - 1) / 1000)


def test_day_windows_count_the_records_that_left_the_ring() -> None:
    n = RING_RECORDS + 40
    rows = run([ev(i, T0 + i * 600_000, amount=100 * (i + 1)) for i in range(n + 1)])
    last = rows[-1]
    assert f(last, "cust_n_7d") == n
    assert f(last, "cust_mean_7d") == pytest.approx(sum(range(1, n + 1)) / n)
    assert f(last, "cust_n_1d") == 16  # the exact windows read the last RECENT records only


def test_new_device_and_distinct_devices() -> None:
    t = T0 + 12 * HOUR_MS
    rows = run([
        ev(0, t, device_id="dA"),
        ev(1, t + 60_000, device_id="dA"),
        ev(2, t + 120_000, device_id="dB"),
        ev(3, t + 180_000),  # no device
    ])  # fmt: skip
    assert f(rows[0], "device_new") == 0.0  # first ever transaction: nothing to compare with
    assert f(rows[1], "device_new") == 0.0
    assert f(rows[2], "device_new") == 1.0
    assert f(rows[2], "cust_devices_1d") == 2.0
    assert f(rows[3], "device_missing") == 1.0
    assert f(rows[3], "device_new") == 0.0


def test_distance_and_speed_from_the_previous_located_transaction() -> None:
    t = T0 + 12 * HOUR_MS
    rows = run([
        ev(0, t, latitude=48.8566, longitude=2.3522),  # Paris
        ev(1, t + 10 * 60_000),  # no location: skipped for distance
        ev(2, t + 2 * HOUR_MS, latitude=45.7640, longitude=4.8357),  # Lyon, ~392 km
    ])  # fmt: skip
    assert math.isnan(f(rows[0], "dist_prev_km"))
    assert math.isnan(f(rows[1], "dist_prev_km"))
    assert f(rows[2], "dist_prev_km") == pytest.approx(392.0, abs=3.0)
    assert f(rows[2], "speed_kmh") == pytest.approx(f(rows[2], "dist_prev_km") / 2.0, rel=1e-5)


def test_terminal_risk_uses_only_days_older_than_the_delay_and_received_labels() -> None:
    delay = 7
    day0 = T0 + 12 * HOUR_MS
    history = [ev(i, day0 + i * 60_000, customer=f"c{i}") for i in range(4)]  # 4 tx at m1 on day 0
    label = {"transaction_id": "t0", "terminal_id": "m1", "event_time": history[0]["event_time"], "is_fraud": True}
    # Windows cover whole days [d - delay - w, d - delay): day 0 counts from day delay + 1 on.
    probe_early = ev(100, day0 + delay * DAY_MS, customer="z")  # day 0 still inside the delay
    probe_late = ev(101, day0 + (delay + 1) * DAY_MS, customer="y")  # day 0 just old enough
    late_label = {**label, "label_time": probe_late["event_time"] + 1}  # not yet received
    got_label = {**label, "label_time": probe_late["event_time"] - 1}
    early, late = run([*history, probe_early, probe_late], [late_label])[-2:]
    assert f(early, "term_n_1d") == 0 and f(early, "term_n_7d") == 0
    assert f(late, "term_n_1d") == 4 and f(late, "term_risk_1d") == 0.0  # label not received yet
    late_with_label = run([*history, probe_early, probe_late], [got_label])[-1]
    assert f(late_with_label, "term_risk_1d") == pytest.approx(0.25)
    assert f(late_with_label, "term_n_30d") == 4


def test_missing_optional_fields_do_not_break_anything() -> None:
    e = {"transaction_id": "x", "event_time": T0, "customer_id": "c", "terminal_id": "m", "amount": 0}
    (row,) = run([e])
    assert f(row, "device_missing") == 1.0
    assert f(row, "mcc") == 0.0
    assert all(f(row, f"channel_{c}") == 0.0 for c in ("pos", "ecom", "atm", "moto", "contactless"))


def test_hashes_are_the_blake2b_digest_and_never_change() -> None:
    texts = ["", "t1", "c-000149", "é-ü", "x" * 300]
    expected = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") for t in texts]
    assert stable_hashes(texts).tolist() == expected
    assert stable_hashes(["t1"]).tolist() == [3012898748006197707]  # pinned: histories in Redis hold these
    assert stable_hashes([]).dtype == np.uint64 and stable_hashes([]).size == 0


def test_non_finite_coordinates_and_unknown_channels_count_as_missing() -> None:
    (row,) = run([ev(1, T0, latitude=math.inf, longitude=2.0, channel="CRYPTO", mcc=None)])
    assert math.isnan(f(row, "dist_prev_km"))
    assert all(f(row, f"channel_{c}") == 0.0 for c in ("pos", "ecom", "atm", "moto", "contactless"))
    assert f(row, "mcc") == 0.0
    # A non-finite position is no position: the next located transaction measures from the one before it.
    rows = run([ev(1, T0, latitude=48.0, longitude=2.0), ev(2, T0 + HOUR_MS, latitude=math.inf, longitude=2.0),
                ev(3, T0 + 2 * HOUR_MS, latitude=49.0, longitude=2.0)])  # fmt: skip
    assert f(rows[2], "dist_prev_km") == pytest.approx(111.2, abs=0.5)


def test_redelivery_gives_the_same_features_and_counts_nothing_twice() -> None:
    store = OfflineFeatures(FeatureEngine(7))
    events = [ev(i, T0 + i * 60_000, amount=1000 * (i + 1)) for i in range(6)]
    first = store.process(events[:4])
    again = store.process(events[2:6])  # 2 and 3 re-delivered
    np.testing.assert_array_equal(again[:2], first[2:4])
    assert int(store.customers["c1"]["seq"][0]) == 6
    assert ring_counts(store.terminals["m1"]) == {(T0 // DAY_MS): (6, 0)}


def test_delay_must_be_at_least_a_day() -> None:
    with pytest.raises(ValueError, match="delay_days"):
        FeatureEngine(0)


def test_delay_must_leave_the_windows_inside_the_terminal_ring() -> None:
    with pytest.raises(ValueError, match="delay_days"):
        FeatureEngine(RING_DAYS - 30)


def test_features_do_not_depend_on_how_events_are_cut_into_batches() -> None:
    rng = np.random.default_rng(4)
    events = [
        ev(i, T0 + int(t), amount=int(rng.integers(100, 90_000)), customer=f"c{rng.integers(0, 5)}",
           terminal=f"m{rng.integers(0, 3)}", device_id=f"d{rng.integers(0, 4)}" if rng.random() < 0.7 else None,
           latitude=float(rng.uniform(40, 50)), longitude=float(rng.uniform(0, 10)))
        for i, t in enumerate(np.sort(rng.integers(0, 40 * DAY_MS, 400)))
    ]  # fmt: skip
    one_batch = OfflineFeatures(FeatureEngine(7)).process(events)  # the vectorised path
    by_event = run(events)  # batch=1: the event-by-event path
    # Customer and event features; terminal ones read the state before the batch, which
    # is the same for any cut while a batch spans less than the label delay.
    own = [i for i, name in enumerate(FEATURE_NAMES) if not name.startswith("term_")]
    np.testing.assert_array_equal(by_event[:, own], one_batch[:, own])


def test_the_card_keeps_its_last_records_and_counts_the_others_by_day() -> None:
    store = OfflineFeatures(FeatureEngine(7))
    store.process([ev(i, T0 + i * 60_000) for i in range(RING_RECORDS + 10)])
    card = store.customers["c1"]
    assert int(card["seq"][0]) == RING_RECORDS + 10
    kept = ring_before(card)
    assert len(kept) == RING_RECORDS and kept["ts"][0] == T0 + 10 * 60_000
    assert [(int(b["day"]), int(b["n"])) for b in card["days"][0] if b["n"]] == [(T0 // DAY_MS, 10)]
    assert ring_counts(store.terminals["m1"])[T0 // DAY_MS][0] == RING_RECORDS + 10


def test_a_redelivery_inside_one_batch_gets_the_same_features_and_is_not_appended() -> None:
    store = OfflineFeatures(FeatureEngine(7))
    store.process([ev(i, T0 + i * 60_000) for i in range(5)])
    rows = store.process([ev(500, T0 + 10**8), ev(501, T0 + 10**8 + 1), ev(500, T0 + 10**8)])
    np.testing.assert_array_equal(rows[0], rows[2])
    assert int(store.customers["c1"]["seq"][0]) == 7
    assert ring_counts(store.terminals["m1"])[(T0 + 10**8) // DAY_MS][0] == 2


def test_terminal_ring_drops_days_too_old_to_be_read() -> None:
    store = OfflineFeatures(FeatureEngine(7))
    day = T0 // DAY_MS
    store.process([ev(0, T0 + RING_DAYS * DAY_MS, customer="a")])  # the slot now holds day + RING_DAYS
    store.apply_label("late", "m1", T0, True)  # a label for the day that slot held before: ignored
    assert ring_counts(store.terminals["m1"]) == {day + RING_DAYS: (1, 0)}


@st.composite
def streams(draw: st.DrawFn) -> list[dict]:
    """Events of a few cards, mostly in time order, with late events and repeated ids."""
    n = draw(st.integers(1, 160))
    gaps = draw(st.lists(st.integers(0, DAY_MS), min_size=n, max_size=n))
    out, t = [], T0
    for i, gap in enumerate(gaps):
        t += gap
        late = draw(st.integers(0, 9)) == 0
        tid = draw(st.integers(0, i)) if draw(st.integers(0, 19)) == 0 else i
        out.append(ev(tid, t - (draw(st.integers(1, 40)) * DAY_MS if late else 0), amount=draw(st.integers(1, 10**7)),
                      customer=f"c{draw(st.integers(0, 1))}", device_id=draw(st.sampled_from([None, "dA", "dB"])),
                      latitude=draw(st.sampled_from([None, 48.0, 45.5]))))  # fmt: skip
        if out[-1]["latitude"] is not None:
            out[-1]["longitude"] = 2.0
    return out


@settings(max_examples=60, deadline=None)
@given(streams(), st.integers(2, 64))
def test_the_batch_path_equals_the_event_by_event_reference(events: list[dict], batch: int) -> None:
    by_event = OfflineFeatures(FeatureEngine(7))
    batched = OfflineFeatures(FeatureEngine(7))
    one = by_event.rows(events, batch=1)
    many = batched.rows(events, batch=batch)
    own = [i for i, name in enumerate(FEATURE_NAMES) if not name.startswith("term_")]
    np.testing.assert_array_equal(one.x[:, own], many.x[:, own])
    np.testing.assert_array_equal(one.seq, many.seq)
    assert {c: k.tobytes() for c, k in by_event.customers.items()} == {c: k.tobytes() for c, k in batched.customers.items()}


def test_a_late_event_reads_the_state_the_records_before_it_left() -> None:
    # A record 32 days older than the bucket its day shares is dropped when it leaves the
    # ring; an event later still must not count it, in one batch as one by one.
    d132, d100 = T0 + 132 * DAY_MS, T0 + 100 * DAY_MS
    events = [ev(i, d132 + i) for i in range(RING_RECORDS)]
    events += [ev(100, d100)] + [ev(200 + i, d132 + 100 + i) for i in range(RING_RECORDS)]
    events += [ev(300, d100 + 29 * DAY_MS)]
    one = run(events)[-1]
    together = OfflineFeatures(FeatureEngine(7)).process(events)[-1]
    assert f(one, "cust_n_30d") == 0.0  # the day-100 record was dropped, the day-132 ones are later
    own = [i for i, name in enumerate(FEATURE_NAMES) if not name.startswith("term_")]  # terminals: read before the batch
    np.testing.assert_array_equal(one[own], together[own])
