"""The card sequence (the deep stage's input) pinned on hand-built histories, and the
sequence model's contract: starts as XGBoost, old manifests load, bad input refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.deep import DeepArch, HybridNet, SequenceEncoder, predict_proba
from models.features import FeatureEngine
from models.featureset import HISTORY_DAYS, N_FEATURES
from models.offline import OfflineFeatures
from models.sequence import N_SEQ, SEQ_FIELDS, SEQ_LEN
from models.units import DAY_MS, HOUR_MS
from tests.unit.test_features import T0, ev

F = {name: i for i, name in enumerate(SEQ_FIELDS)}


def sequences(events: list[dict], batch: int = 1) -> np.ndarray:
    return OfflineFeatures(FeatureEngine(7)).rows(events, [], batch=batch).seq


def test_probes_then_a_spend_from_a_new_device_read_in_order() -> None:
    t = T0 + 12 * HOUR_MS
    events = [
        ev(0, t - 3 * DAY_MS, amount=4_000, device_id="home", latitude=45.0, longitude=1.0),
        ev(1, t - 20 * 60_000, amount=100, device_id="new", channel="ECOM"),
        ev(2, t - 10 * 60_000, amount=150, device_id="new", channel="ECOM"),
        ev(3, t, amount=9_000, device_id="new", latitude=45.0, longitude=2.0),
    ]
    seq = sequences(events)[-1]
    assert seq.shape == (SEQ_LEN, N_SEQ)
    assert seq[: SEQ_LEN - 4].sum() == 0.0  # left padding: steps that do not exist are zeros
    steps = seq[SEQ_LEN - 4 :]
    np.testing.assert_array_equal(steps[:, F["present"]], [1, 1, 1, 1])
    np.testing.assert_allclose(steps[:, F["log_amount"]], np.log1p([40.0, 1.0, 1.5, 90.0]), rtol=1e-6)
    np.testing.assert_allclose(steps[1:, F["log_gap_s"]], np.log1p([3 * 86_400 - 1_200, 600, 600]), rtol=1e-6)
    assert steps[0, F["log_gap_s"]] == 0.0  # the card's first record
    np.testing.assert_allclose(steps[:, F["log_age_s"]], np.log1p([3 * 86_400, 1_200, 600, 0]), rtol=1e-6)
    np.testing.assert_array_equal(steps[:, F["device_first_seen"]], [1, 1, 0, 0])
    np.testing.assert_array_equal(steps[:, F["device_is_current"]], [0, 1, 1, 1])
    # Distance from the step before: the probes have no location, so none for the spend either.
    np.testing.assert_array_equal(steps[:, F["log_dist_km"]], [0, 0, 0, 0])
    moved = sequences([events[0], ev(4, t, device_id="home", latitude=45.0, longitude=2.0)])[-1]
    assert moved[-1, F["log_dist_km"]] == pytest.approx(math.log1p(78.7), abs=0.01)  # one degree east at 45° N
    np.testing.assert_array_equal(steps[:, F["located"]], [1, 0, 0, 1])
    assert steps[3, F["hour"]] == pytest.approx(0.5)


def test_only_the_last_steps_younger_than_the_history_window_count() -> None:
    t = T0 + 60 * DAY_MS
    old = [ev(i, t - (HISTORY_DAYS + 1) * DAY_MS + i) for i in range(3)]  # too old to count
    recent = [ev(10 + i, t - (SEQ_LEN + 5 - i) * HOUR_MS) for i in range(SEQ_LEN + 5)]
    seq = sequences([*old, *recent, ev(99, t)])[-1]
    assert seq[:, F["present"]].sum() == SEQ_LEN  # the window is full: the last SEQ_LEN - 1 records and the event
    first = sequences([*old, ev(99, t)])[-1]
    assert first[:, F["present"]].sum() == 1 and first[-1, F["log_gap_s"]] == 0.0


def test_sequences_do_not_depend_on_how_events_are_cut_into_batches_or_on_redelivery() -> None:
    rng = np.random.default_rng(7)
    events = [
        ev(i, T0 + int(t), amount=int(rng.integers(100, 90_000)), customer=f"c{rng.integers(0, 4)}",
           device_id=f"d{rng.integers(0, 3)}" if rng.random() < 0.7 else None,
           latitude=float(rng.uniform(40, 50)) if rng.random() < 0.5 else None, longitude=float(rng.uniform(0, 10)))
        for i, t in enumerate(np.sort(rng.integers(0, 20 * DAY_MS, 300)))
    ]  # fmt: skip
    np.testing.assert_array_equal(sequences(events, batch=1), sequences(events, batch=512))
    store = OfflineFeatures(FeatureEngine(7))
    first = store.process_batch(events).sequences
    again = store.process_batch(events[-5:]).sequences  # re-delivered: the records before them, nothing appended
    np.testing.assert_array_equal(first[-5:], again)


def _rows(n: int, trees: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    margin = rng.normal(size=n).astype(np.float32)
    leaves = rng.integers(0, 7, size=(n, trees)).astype(np.int32)
    seq = rng.uniform(0, 3, size=(n, SEQ_LEN, N_SEQ)).astype(np.float32)
    seq[:, :4] = 0.0  # padding
    return x, margin, leaves, seq


@pytest.mark.parametrize("encoder", ["conv", "gru"])
def test_a_residual_sequence_model_starts_as_xgboost(encoder: str) -> None:
    torch.manual_seed(0)
    net = HybridNet(DeepArch(N_FEATURES, 5, seq_len=SEQ_LEN, seq_fields=N_SEQ, encoder=encoder, residual=True))
    x, margin, leaves, seq = _rows(64, 5)
    net.set_scaler(x, seq)
    p = predict_proba(net, x, margin, leaves, seq)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-margin)), rtol=1e-6)
    with pytest.raises(ValueError, match="reads the card sequence"):
        predict_proba(net, x, margin, leaves)


def test_the_sequence_changes_the_score_of_a_trained_shape() -> None:
    torch.manual_seed(0)
    net = HybridNet(DeepArch(N_FEATURES, 5, seq_len=SEQ_LEN, seq_fields=N_SEQ)).eval()
    x, margin, leaves, seq = _rows(8, 5)
    net.set_scaler(x, seq)
    shuffled = seq[:, ::-1].copy()
    assert not np.allclose(predict_proba(net, x, margin, leaves, seq), predict_proba(net, x, margin, leaves, shuffled))


def test_a_manifest_written_before_sequences_loads_as_a_model_without_one() -> None:
    old = {"n_features": N_FEATURES, "n_trees": 4, "use_xgb": True, "emb_dim": 8, "hidden": [16], "dropout": 0.1}
    arch = DeepArch.from_dict(old)
    assert (arch.seq_len, arch.residual, arch.hidden) == (0, False, (16,))
    assert DeepArch.from_dict(arch.to_dict()) == arch
    with pytest.raises(ValueError, match="expected 'gru' or 'conv'"):
        SequenceEncoder(N_SEQ, 8, "lstm")
