"""Safety rails of the operator commands, driven through the real CLI: `model.dir` honoured,
version names checked, no topic created by a failed replay, one metrics port per service."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from models.artifacts import CURRENT, save_bundle
from stream.cli import app
from stream.cli.pipeline import SERVICES, service_env
from stream.config import load_settings
from stream.testing import LocalInfra, tiny_bundle

pytestmark = pytest.mark.integration


def test_models_commands_use_model_dir_and_refuse_a_path_for_a_version(tmp_path: Path) -> None:
    store = tmp_path / "store"
    bundle = tiny_bundle("v7", deep=True)
    assert bundle.deep is not None
    save_bundle(store / "v7", bundle.booster, bundle.deep, bundle.mlp_only, bundle.thresholds, {})
    env = {"FRAUDSTREAM_MODEL__DIR": str(store)}
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list"], env=env)
    assert listed.exit_code == 0 and "v7" in listed.output, listed.output
    promoted = runner.invoke(app, ["models", "promote", "v7"], env=env)
    assert promoted.exit_code == 0, promoted.output
    assert (store / CURRENT).read_text().strip() == "v7"
    assert not (Path("artifacts") / "v7").exists()
    for bad in ("../../etc", "/tmp/x", "v7/../v7"):
        refused = runner.invoke(app, ["models", "promote", bad], env=env)
        assert refused.exit_code != 0, bad
    assert (store / CURRENT).read_text().strip() == "v7"


def test_a_replay_of_a_missing_topic_fails_and_creates_nothing(infra: LocalInfra, uid: str) -> None:
    env = {"FRAUDSTREAM_KAFKA_BOOTSTRAP": infra.bootstrap}
    target = f"replay-target-{uid}"
    result = CliRunner().invoke(app, ["replay", "--from", "0", "--topic", f"no-such-{uid}", "--to-topic", target], env=env)
    assert result.exit_code == 1 and "does not exist" in result.output, result.output
    kafka = load_settings(environ=env).kafka
    assert target not in AdminClient(kafka.admin_config()).list_topics(timeout=10).topics


def test_run_gives_each_service_its_own_metrics_port() -> None:
    ports = [service_env(s, None, {"FRAUDSTREAM_METRICS__PORT": "29100"})["FRAUDSTREAM_METRICS__PORT"] for s in SERVICES]
    assert ports == ["29100", "29101", "29102"]
    assert "FRAUDSTREAM_METRICS__PORT" not in service_env("deep", None, {})


def test_an_interrupted_demo_leaves_no_topic_group_or_key_behind(infra: LocalInfra, uid: str) -> None:
    import redis

    from stream.kafka.topics import ensure_topics
    from stream.ops.demo import cleanup

    env = {"FRAUDSTREAM_KAFKA__BOOTSTRAP": infra.bootstrap, "FRAUDSTREAM_REDIS__URL": infra.redis_url,
           "FRAUDSTREAM_REDIS__NAMESPACE": f"demo-{uid}"}  # fmt: skip
    settings = load_settings(None, env)
    topics = [f"demo.{uid}.{k}" for k in ("transactions", "decisions")]
    ensure_topics(settings.kafka, topics)
    client = redis.Redis.from_url(infra.redis_url)
    ns = settings.redis.namespace
    client.mset({f"fs:{ns}:{{c:1}}": b"x", f"fs:{ns}:{{t:2}}": b"y", f"hb:{ns}:deep": b"1", f"pm:{ns}:{{g:a}}": b"z"})
    client.set(f"fs:other-{uid}:{{c:1}}", b"kept")
    assert cleanup(settings, topics, [f"demo-{uid}-scorer"]) == (2, 4)
    assert not set(topics) & set(AdminClient(settings.kafka.admin_config()).list_topics(timeout=10).topics)
    assert list(client.scan_iter(match=f"*:{ns}:*")) == []
    assert client.get(f"fs:other-{uid}:{{c:1}}") == b"kept"
    client.close()
