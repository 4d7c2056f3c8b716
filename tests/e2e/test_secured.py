"""The pipeline through a secured deployment: every client on the broker's SASL_SSL listener
(SCRAM-SHA-512, the CA from deploy/local/tls.sh) and the feature store on a TLS-only Redis as
an ACL user. Exactly one decision per transaction, and no password in any service's log."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.testing import LocalInfra, SecuredInfra, secured_infra
from tests.e2e.conftest import TrainedModel, last_events, make_pipeline

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredInfra]:
    with secured_infra(tmp_path_factory.mktemp("secured") / "run") as running:
        yield running


def test_the_pipeline_runs_end_to_end_over_sasl_ssl_and_tls_redis(
    secured: SecuredInfra, trained: TrainedModel, uid: str, tmp_path: Path
) -> None:
    infra = LocalInfra(secured.sasl_bootstrap, secured.redis_url, None)
    pipeline = make_pipeline(infra, trained, uid, tmp_path, secured.settings_env())
    assert pipeline.settings.kafka.admin_config()["security.protocol"] == "SASL_SSL"
    try:
        events = last_events(trained.sim, 3_000)
        pipeline.start_stages()
        pipeline.start("labels")
        pipeline.produce(events, 1_000.0)
        decisions = pipeline.exactly_once(events)
        assert {d["route"] for d in decisions} >= {"XGB_APPROVE", "DEEP"}, "features or the deep stage unreachable"
    finally:
        codes = pipeline.stop_all()
    assert set(codes.values()) == {0}
    secrets = [secured.secret("kafka.password"), secured.secret("redis.password")]
    for log in tmp_path.glob("*.log"):
        text = log.read_text(errors="replace")
        assert not any(s in text for s in secrets), f"a password in {log.name}"


def test_a_wrong_sasl_password_stops_the_scorer_with_an_error_that_does_not_show_it(
    secured: SecuredInfra, trained: TrainedModel, uid: str, tmp_path: Path
) -> None:
    infra = LocalInfra(secured.sasl_bootstrap, secured.redis_url, None)
    wrong = "wrong-" + uid
    pipeline = make_pipeline(infra, trained, uid, tmp_path, secured.settings_env())
    env = pipeline.env | {"FRAUDSTREAM_KAFKA__SASL_PASSWORD": wrong}
    done = subprocess.run(
        [sys.executable, "-m", "stream", "score"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Authentication failed" in output or "SASL authentication error" in output, output[-2000:]
    assert wrong not in output
