"""Every scenario's manifests: the structural rules (tests/chart/manifests.py) and the Kubernetes schemas, offline.

The schemas are the strict (no unknown fields) JSON schemas of Kubernetes v1.37 shipped by `kubernetes-validate`;
the same check against the real API server (server-side dry run, fieldValidation=Strict) is in test_on_apiserver.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.chart import manifests
from tests.chart.helm import KUBE_VERSION, Manifest, find
from tests.chart.scenarios import CRD_KINDS, SCENARIOS


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_structural_rules_hold(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    assert manifests.problems(rendered[scenario]) == []


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_manifest_matches_the_kubernetes_schema(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    errors = []
    for doc in rendered[scenario]:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION.lstrip("v"), strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{manifests.ref(doc)}: {error.message} at {list(error.path)}")
    assert errors == []


def test_the_schema_check_rejects_an_unknown_field(rendered: dict[str, list[Manifest]]) -> None:
    deployment = copy.deepcopy(find(rendered["default"], "Deployment", "wattwise-operator"))
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION.lstrip("v"), strict=True)


def _broken(docs: list[Manifest], kind: str, name: str, edit: Any) -> list[Manifest]:
    docs = copy.deepcopy(docs)
    edit(find(docs, kind, name))
    return docs


def _containers(doc: dict[str, Any]) -> Any:
    return doc["spec"]["template"]["spec"]["containers"]


BREAKAGES = {
    "writable root filesystem": (
        "Deployment",
        "wattwise-extender",
        lambda d: _containers(d)[0]["securityContext"].update(readOnlyRootFilesystem=False),
        "root filesystem is writable",
    ),
    "a capability outside the exception": (
        "Deployment",
        "wattwise-operator",
        lambda d: _containers(d)[0]["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        "adds capabilities ['NET_ADMIN']",
    ),
    "no memory limit": (
        "DaemonSet",
        "wattwise-agent",
        lambda d: _containers(d)[0]["resources"]["limits"].pop("memory"),
        "no limits.memory",
    ),
    "writable hostPath": (
        "DaemonSet",
        "wattwise-agent",
        lambda d: _containers(d)[0]["volumeMounts"][1].update(readOnly=False),
        "mounted writable",
    ),
    "image on latest": (
        "Deployment",
        "wattwise-scheduler",
        lambda d: _containers(d)[0].update(image="registry.k8s.io/kube-scheduler:latest"),
        "is not pinned",
    ),
    "service selecting nothing": (
        "Service",
        "wattwise-extender",
        lambda d: d["spec"]["selector"].update({"app.kubernetes.io/component": "nope"}),
        "selects 0 workloads",
    ),
    "missing label": (
        "ConfigMap",
        "wattwise-scheduler",
        lambda d: d["metadata"]["labels"].pop("app.kubernetes.io/part-of"),
        "missing labels",
    ),
    "wildcard verb": (
        "ClusterRole",
        "wattwise-operator",
        lambda d: d["rules"][0].update(verbs=["*"]),
        "wildcard in verbs",
    ),
    "binding to a role nobody ships": (
        "ClusterRoleBinding",
        "wattwise-operator",
        lambda d: d["roleRef"].update(name="cluster-admin"),
        "neither rendered nor upstream",
    ),
}


def test_network_policies_must_name_real_ports_and_peers(rendered: dict[str, list[Manifest]]) -> None:
    docs = copy.deepcopy(rendered["everything"])
    operator = find(docs, "NetworkPolicy", "power-wattwise-operator")["spec"]["ingress"][0]
    operator["ports"][0]["port"] = "metrics"
    operator["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] = "agents"
    found = manifests.problems(docs)
    assert any("port metrics is not a port of Deployment" in p for p in found), found
    assert any("selects no workload of the chart" in p for p in found), found


def test_monitors_must_point_at_real_ports(rendered: dict[str, list[Manifest]]) -> None:
    docs = copy.deepcopy(rendered["everything"])
    find(docs, "ServiceMonitor", "power-wattwise-operator")["spec"]["endpoints"][0]["port"] = "metrics"
    find(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"] = "http"
    found = manifests.problems(docs)
    assert any("port metrics is not a port of Service" in p for p in found), found
    assert any("port http is not a container port" in p for p in found), found


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_structural_rules_catch_a_broken_manifest(rendered: dict[str, list[Manifest]], case: str) -> None:
    kind, name, edit, expected = BREAKAGES[case]
    found = manifests.problems(_broken(rendered["default"], kind, name, edit))
    assert any(expected in problem for problem in found), found


def test_duplicates_are_caught(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["default"]
    found = manifests.problems([*docs, find(docs, "Service", "wattwise-operator")])
    assert any("rendered twice" in problem for problem in found)
