"""The deployment files run as written: every service's environment loads, the GPU is optional,
health and restarts everywhere, the autoscaler scales on a metric that exists up to the
partition count, and every alert and dashboard query parses and names exported metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from stream.config import KafkaSettings, load_settings
from stream.metrics import Metrics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ONE_SHOT = {"trainer", "promote"}


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return doc


def _k8s(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((REPO / "deploy" / "k8s" / name).read_text()) if d]


def _exported() -> set[str]:
    """Every series name the services export (counters with _total, histograms with _bucket...)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "info": ("_info",)}
    names: set[str] = set()
    for family in Metrics("any").registry.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names | {"up"}


def _check_query(expr: str, exported: set[str]) -> None:
    promql_parser.parse(expr)  # raises on a syntax error
    for name in re.findall(r"\b(fraudstream_[a-z0-9_]+)\b", expr):
        assert name in exported, f"{name} in {expr!r} is not exported"


def test_every_compose_service_loads_its_environment_and_the_gpu_is_optional() -> None:
    services = _compose()["services"]
    for name, svc in services.items():
        if "environment" in svc and name not in ("kafka",):
            env = {k: str(v) for k, v in svc["environment"].items()}
            load_settings(None, env)  # a misspelt or unknown FRAUDSTREAM_* key fails here, naming it
        if name in ("kafka", "redis") or name in ONE_SHOT:
            continue
        assert svc.get("restart") in ("unless-stopped", "on-failure"), name
        if name != "simulator":
            assert "healthcheck" in svc, name
    gpu = [n for n, s in services.items() if "devices" in str(s.get("deploy", {}))]
    assert gpu == ["deep-gpu"] and services["deep-gpu"]["profiles"] == ["gpu"]
    assert "profiles" not in services["deep"] and services["deep"]["environment"]["FRAUDSTREAM_DEEP__DEVICE"] == "cpu"
    kafka = services["kafka"]["environment"]
    external = re.search(r"EXTERNAL://localhost:(\d+)", kafka["KAFKA_ADVERTISED_LISTENERS"])
    assert external and f"127.0.0.1:{external.group(1)}:{external.group(1)}" in services["kafka"]["ports"]
    for one_shot in ONE_SHOT:
        assert services[one_shot]["volumes"] == ["artifacts:/artifacts"]
    for dockerfile in (REPO / "deploy" / "docker").glob("*.Dockerfile"):
        text = dockerfile.read_text()
        assert "chown 65534:65534 /artifacts" in text and text.index("chown") < text.index("USER 65534"), dockerfile


def test_the_autoscaler_scales_on_the_adapter_metric_up_to_the_partition_count() -> None:
    hpa = next(d for d in _k8s("scaling.yaml") if d["kind"] == "HorizontalPodAutoscaler")
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]
    rule = yaml.safe_load(_k8s("adapter.yaml")[0]["data"]["config.yaml"])["externalRules"][0]
    assert metric["name"] == rule["name"]["as"] and "selector" not in metric
    _check_query(rule["seriesQuery"], _exported())
    config = yaml.safe_load(_k8s("config.yaml")[0]["data"]["config.yaml"])
    partitions = config["kafka"].get("partitions", KafkaSettings().partitions)
    assert hpa["spec"]["maxReplicas"] <= partitions
    scorer = _k8s("scorer.yaml")[0]
    assert scorer["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    pvc = next(d for d in _k8s("scaling.yaml") if d["kind"] == "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    job = _k8s("train-job.yaml")[0]["spec"]
    assert job["suspend"] is True
    mounts = job["template"]["spec"]["initContainers"][0]["volumeMounts"]
    assert {"name": "artifacts", "mountPath": "/artifacts"} in mounts  # the one writer
    for name in ("scorer.yaml", "deep.yaml", "labels.yaml"):
        pod = _k8s(name)[0]["spec"]["template"]["spec"]
        (artifacts,) = [m for c in pod["containers"] for m in c["volumeMounts"] if m["name"] == "artifacts"]
        assert artifacts["readOnly"] is True, name


def test_alert_rules_and_dashboard_queries_parse_and_name_exported_metrics() -> None:
    exported = _exported()
    rules = yaml.safe_load((REPO / "deploy" / "monitoring" / "alerts.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    for r in alerts:
        assert set(r) == {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"]
        _check_query(r["expr"], exported)
    covered = " ".join(r["expr"] for r in alerts)
    for needed in ("fraudstream_consumer_lag", "fraudstream_fallback_level", "fraudstream_dlq_records_total",
                   "fraudstream_decision_latency_seconds_bucket", "fraudstream_records_consumed_total"):  # fmt: skip
        assert needed in covered, needed
    prometheus = yaml.safe_load((REPO / "deploy" / "monitoring" / "prometheus.yml").read_text())
    assert prometheus["rule_files"] == ["alerts.yml"]
    dashboard = json.loads((REPO / "deploy" / "monitoring" / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["targets"], panel["title"]
        for target in panel["targets"]:
            _check_query(target["expr"], exported)
