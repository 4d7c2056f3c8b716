"""Training end to end on small data: determinism, own-history files, artifact checks (file I/O)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from models import xgb as xgbm
from models.artifacts import load_bundle, save_bundle
from models.deep import predict_proba
from models.errors import ArtifactError
from models.featureset import FEATURE_NAMES
from models.sequence import SEQ_LEN
from models.simulator import SimConfig, simulate
from models.training import TrainConfig, compute_features, compute_rows, train_models
from stream.cli import app

pytestmark = pytest.mark.integration
SMALL = SimConfig(n_customers=400, n_terminals=120, days=30, seed=3)


def test_same_data_and_seed_give_identical_metrics_and_outputs() -> None:
    sim = simulate(SMALL)
    assert simulate(SMALL).transactions.equals(sim.transactions)
    a = train_models(sim.transactions, sim.labels, TrainConfig(seed=3))
    b = train_models(sim.transactions, sim.labels, TrainConfig(seed=3))
    assert a.table == b.table | {k: {**b.table[k], "train_s": a.table[k]["train_s"]} for k in b.table if "train_s" in b.table[k]}
    assert a.thresholds == b.thresholds
    assert a.extra["intervals"] == b.extra["intervals"] and a.extra["intervals"]["replicates"] == 100
    rows = compute_rows(sim.transactions.iloc[-2000:], sim.labels.iloc[:0], 7)
    x = rows.x
    ma, mb = xgbm.margins(a.booster, x), xgbm.margins(b.booster, x)
    np.testing.assert_array_equal(ma, mb)
    lv = xgbm.leaves(a.booster, x)
    np.testing.assert_array_equal(predict_proba(a.deep, x, ma, lv, rows.seq), predict_proba(b.deep, x, mb, lv, rows.seq))
    assert a.deep.arch.seq_len == SEQ_LEN and a.deep.arch.residual
    assert set(a.extra["by_scenario"]) <= set(sim.transactions["scenario"]) and a.extra["timings_s"]["hybrid"] > 0


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sim = simulate(SMALL)
    r = train_models(sim.transactions, sim.labels, TrainConfig(seed=3, replicates=0))
    return save_bundle(tmp_path_factory.mktemp("art") / "v1", r.booster, r.deep, r.mlp_only, r.thresholds, {})


def test_loaded_model_scores_micro_batches_through_its_forest_exactly(saved: Path) -> None:
    bundle = load_bundle(saved, deep=False)
    assert bundle.forest is not None
    sim = simulate(SMALL)
    x = compute_features(sim.transactions.iloc[-3000:], sim.labels.iloc[:0], 7)
    whole, leaves = xgbm.margins(bundle.booster, x), xgbm.leaves(bundle.booster, x)
    for start in range(0, len(x) - xgbm.FOREST_MAX_ROWS, 97):
        m, lv = bundle.forest.predict(x[start : start + 1 + start % xgbm.FOREST_MAX_ROWS])
        np.testing.assert_array_equal(m, whole[start : start + len(m)])
        np.testing.assert_array_equal(lv, leaves[start : start + len(m)])


# What stage 1's process loads: the CLI, the scorer's wiring, a model without its deep part, a
# scored micro-batch. torch would take the scorer from about 150 MB to over a gigabyte.
_STAGE_ONE = """
import sys
from pathlib import Path
import numpy as np
import stream.cli, stream.services
from models.featureset import N_FEATURES
from stream.state.versions import ModelRegistry
model = Path(sys.argv[1])
bundle = ModelRegistry(model.parent, model.name, deep=False).current()
assert bundle.forest is not None
bundle.forest.predict(np.zeros((4, N_FEATURES), dtype=np.float32))
print(sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "pandas", "pyarrow", "matplotlib"}))
"""


def test_stage_one_never_imports_torch_or_dataframes(saved: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _STAGE_ONE, str(saved)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"  # the lines before it are logs


def test_artifacts_load_without_pickle_and_reject_damage(saved: Path, tmp_path: Path) -> None:
    bundle = load_bundle(saved)
    assert bundle.version == "v1"
    assert (saved / "xgb.ubj").read_bytes()[:1] == b"{"  # UBJSON object, not a pickle
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    (broken / "deep.pt").write_bytes((broken / "deep.pt").read_bytes()[:-10])
    with pytest.raises(ArtifactError, match="checksum"):
        load_bundle(broken)
    (broken / "deep.pt").unlink()
    with pytest.raises(ArtifactError, match=re.escape("missing file deep.pt")):
        load_bundle(broken)
    shutil.rmtree(broken)
    shutil.copytree(saved, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["features"] = manifest["features"][:-1]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"expects {len(FEATURE_NAMES) - 1} features"):
        load_bundle(broken)
    with pytest.raises(ArtifactError, match=re.escape("no manifest.json")):
        load_bundle(tmp_path)


def test_train_on_a_csv_with_only_the_required_columns(tmp_path: Path) -> None:
    tx = simulate(SMALL).transactions
    own = tx[["transaction_id", "event_time", "customer_id", "terminal_id", "amount", "is_fraud"]].rename(
        columns={"event_time": "ts", "amount": "amt_eur"}
    )
    own["ts"] = (own["ts"] // 1000).astype("datetime64[s]").astype(str)  # ISO timestamps
    own["amt_eur"] = own["amt_eur"] / 100
    own["is_fraud"] = own["is_fraud"].map({True: "yes", False: "no"})  # a label spelling banks export
    data = tmp_path / "history.csv.gz"  # compressed, as exports often are
    own.to_csv(data, index=False)
    out = tmp_path / "store" / "own-v1"
    result = CliRunner().invoke(
        app, ["train", "--data", str(data), "--columns", "event_time=ts,amount=amt_eur,amount_unit=major", "--out", str(out),
              "--label-delay-days", "2.5", "--test-days", "7", "--gap-days", "2", "--blend-share", "0.4",
              "--band-max-share", "0.1"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    bundle = load_bundle(out)
    assert bundle.manifest["metrics"]["xgboost"]["auc_roc"] > 0.5
    # the feature delay follows the label delay (whole days, rounded up); the split is as asked
    assert bundle.delay_days == 3
    assert {k: bundle.manifest["train_config"][k] for k in ("test_days", "gap_days", "blend_share", "band_max_share")} == {
        "test_days": 7, "gap_days": 2, "blend_share": 0.4, "band_max_share": 0.1}  # fmt: skip
    # the same models' cut-offs again per band cap, paired with the deployed 0.1
    sweep = bundle.manifest["band_sweep"]
    assert set(sweep) == {"0.05", "0.1", "0.2", "0.3"} and sweep["0.1"]["minus_deployed_high"] == 0.0
    assert sweep["0.05"]["band_share"] <= sweep["0.3"]["band_share"] and "stage 2's load against caught fraud" in result.output
    # not a terminal: plain progress lines instead of a spinner that prints nothing
    assert "95% intervals: 100 card-bootstrap replicates" in result.output and "hybrid − xgboost" in result.output
    assert "training: started" in result.output and re.search(r"training \[\s*\d+ s\] ", result.output)
    assert "split: test the last 7 days, gap 2 days, MLPs on 40% of the training days; feature delay 3 days" in result.output
    scores = tmp_path / "scores.csv"
    mapping = "event_time=ts,amount=amt_eur,amount_unit=major"
    result = CliRunner().invoke(app, ["evaluate", "--model", str(out), "--data", str(data), "--out", str(scores),
                                      "--replicates", "20", "--columns", mapping])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "hybrid" in result.output and "xgboost" in result.output
    assert "95% intervals: 20 card-bootstrap replicates" in result.output
    table = pd.read_csv(scores)
    assert len(table) == len(own) and list(table.columns) == [
        "transaction_id", "event_time", "customer_id", "is_fraud", "xgboost", "hybrid", "route", "decision"]  # fmt: skip
    assert table["xgboost"].between(0, 1).all() and set(table["decision"]) <= {"APPROVE", "REVIEW", "BLOCK"}
    # promote shows what changes against the version it replaces
    shutil.copytree(out, tmp_path / "store" / "own-v2")
    env = {"FRAUDSTREAM_MODEL__DIR": str(tmp_path / "store")}
    assert CliRunner().invoke(app, ["models", "promote", "own-v1"], env=env).exit_code == 0
    result = CliRunner().invoke(app, ["models", "promote", "own-v2"], env=env)
    assert result.exit_code == 0, result.output
    assert "promoted own-v2 (was own-v1)" in result.output and "test metrics: own-v1 → own-v2" in result.output
    assert re.search(r"hybrid\W+average_precision\W+[\d.]+\W+[\d.]+\W+\+0\.0000", result.output), result.output


def test_train_refuses_labels_and_amounts_it_cannot_read_naming_column_and_value(tmp_path: Path) -> None:
    tx = simulate(SMALL).transactions.head(50)
    own = tx[["transaction_id", "event_time", "customer_id", "terminal_id", "amount", "is_fraud"]].copy()
    own["is_fraud"] = "no"
    own.loc[own.index[7], "is_fraud"] = "maybe"
    data = tmp_path / "labels.csv"
    own.to_csv(data, index=False)
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "never")])
    assert result.exit_code == 1 and "column 'is_fraud'" in result.output and "'maybe'" in result.output, result.output
    own["is_fraud"] = "no"
    own["amount"] = own["amount"] / 100  # 57.16-style amounts without amount_unit
    own.to_csv(data, index=False)
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "never")])
    assert result.exit_code == 1 and "amount_unit=major" in result.output, result.output
    assert not (tmp_path / "never").exists()


def test_a_bad_deploy_never_stops_a_service_and_names_are_never_paths(saved: Path, tmp_path: Path) -> None:
    import shutil

    from models.artifacts import promote
    from stream.state.versions import ModelRegistry

    root = tmp_path / "artifacts"
    shutil.copytree(saved, root / "v1")
    (root / "CURRENT").write_text("../../etc")
    started = ModelRegistry(root, "latest", deep=False)  # a service starting during the bad deploy
    assert started.usable is None and "not a version name" in (started.broken or "")
    with pytest.raises(ArtifactError):
        started.current()
    with pytest.raises(ArtifactError, match="not a version name"):
        promote(root, "../v1")
    with pytest.raises(ArtifactError, match="not a version name"):
        started.get("/etc")
    promote(root, "v1")
    started._retried_at = -1e9  # the next look at the pointer is due
    assert started.refresh() and started.current().version == "v1"
    (root / "CURRENT").write_bytes(b"\xff\xfe garbage")
    started._pointer_mtime = -1.0
    assert not started.refresh() and started.usable is None  # broken again, and says so
