"""The deployment files, checked offline: docker-compose.yml against the Compose specification,
the Kubernetes manifests against Kubernetes' schemas, the KEDA ScaledObjects and the Grafana
dashboard against what the code defines (consumer groups, partitions, metric names)."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY, CollectorRegistry

import shared.metrics  # noqa: F401  (registers the billing_* metrics)
from ops.status import stage_subscriptions

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"
# Sample names each metric type exposes, besides the family's own name for gauges.
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def manifests() -> list[dict]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == kind}


def defined_metric_names() -> set[str]:
    faststream = CollectorRegistry()
    KafkaPrometheusMiddleware(registry=faststream)
    return {family.name + suffix for registry in (REGISTRY, faststream) for family in registry.collect()
            for suffix in SUFFIXES.get(family.type, ("",))}


def test_compose_file_follows_the_compose_specification():
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jsonschema.validate(compose, schema)
    assert {"prometheus", "grafana"} <= set(compose["services"])
    for mounted in compose["services"]["prometheus"]["volumes"] + compose["services"]["grafana"]["volumes"]:
        assert (ROOT / mounted.split(":")[0]).exists(), mounted


@pytest.mark.parametrize("doc", [doc for doc in manifests() if doc["apiVersion"] != "keda.sh/v1alpha1"],
                         ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}")
def test_kubernetes_manifests_follow_the_schema(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_worker_has_probes_on_its_health_endpoints():
    deployments = of_kind("Deployment")
    assert set(stage_subscriptions()) | {"payments-bridge"} == set(deployments)
    for name, deployment in deployments.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready", name


def test_each_stage_scales_on_the_lag_of_its_own_consumer_groups_up_to_the_partitions():
    partitions = int(of_kind("ConfigMap")["billing-env"]["data"]["BILLING_KAFKA_PARTITIONS"])
    scaled = of_kind("ScaledObject")
    deployments = of_kind("Deployment")
    assert set(scaled) == set(stage_subscriptions())
    for stage, subscriptions in stage_subscriptions().items():
        spec = scaled[stage]["spec"]
        assert spec["scaleTargetRef"]["name"] in deployments
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] == partitions
        triggers = [(trigger["metadata"]["consumerGroup"], trigger["metadata"]["topic"])
                    for trigger in spec["triggers"] if trigger["type"] == "kafka"]
        assert sorted(triggers) == sorted(subscriptions), stage
        assert all(int(trigger["metadata"]["lagThreshold"]) > 0 for trigger in spec["triggers"])


def test_every_dashboard_panel_shows_metrics_the_code_defines():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "billing.json").read_text())
    defined = defined_metric_names()
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        used = {name for target in panel["targets"]
                for name in re.findall(r"\b(?:billing|faststream)_[a-z_]+\b", target["expr"])}
        assert used, f"panel {panel['title']!r} shows no project metric"
        assert used <= defined, f"panel {panel['title']!r} uses undefined {sorted(used - defined)}"
