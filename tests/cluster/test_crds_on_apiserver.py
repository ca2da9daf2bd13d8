"""The CRDs as the real API server enforces them: install, examples, rejections, status, printer columns."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from tests.support.cluster_objects import Cleanup, rest_call
from tests.support.controlplane import CRD_DIR, ControlPlane, KubeApi

pytestmark = pytest.mark.cluster

REPO = CRD_DIR.parent
GROUP, VERSION = "wattwise.dev", "v1alpha1"
PLURALS = {"PowerBudget": "powerbudgets", "WorkloadClass": "workloadclasses"}
ALL_EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
EXAMPLES = [p for p in ALL_EXAMPLES if yaml.safe_load(p.read_text())["apiVersion"].startswith(f"{GROUP}/")]
INVALID = sorted((REPO / "tests" / "fixtures" / "invalid").glob("*.yaml"))


def _load(path: pathlib.Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def _expectation(path: pathlib.Path) -> str:
    """The API server's wording when a fixture declares one (`# expect-apiserver:`), else the shared one."""
    lines = path.read_text().splitlines()
    for line in lines:
        if line.startswith("# expect-apiserver: "):
            return line.removeprefix("# expect-apiserver: ")
    return lines[0].removeprefix("# expect: ")


def _path(kind: str, name: str = "") -> str:
    return f"/apis/{GROUP}/{VERSION}/{PLURALS[kind]}" + (f"/{name}" if name else "")


def _create(kube_api: KubeApi, obj: dict[str, Any]) -> dict[str, Any]:
    """Create with strict field validation, as `kubectl apply --validate=strict` does."""
    path = _path(obj["kind"])
    created: dict[str, Any] = rest_call(
        kube_api.api_client, "POST", path, query=[("fieldValidation", "Strict")], body=obj
    )
    return created


def _patch(kube_api: KubeApi, path: str, patch: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = rest_call(
        kube_api.api_client, "PATCH", path, body=patch, content_type="application/merge-patch+json"
    )
    return answer


def test_both_crds_are_established(wattwise_crds: list[str], kube_api: KubeApi) -> None:
    assert sorted(wattwise_crds) == ["powerbudgets.wattwise.dev", "workloadclasses.wattwise.dev"]
    for name in wattwise_crds:
        crd = rest_call(kube_api.api_client, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted(
    path: pathlib.Path, wattwise_crds: list[str], kube_api: KubeApi, k8s_cleanup: Cleanup
) -> None:
    obj = _load(path)
    created = k8s_cleanup.add(_create(kube_api, obj))
    assert (
        created["spec"]["capWatts" if obj["kind"] == "PowerBudget" else "tier"]
        == obj["spec"]["capWatts" if obj["kind"] == "PowerBudget" else "tier"]
    )


def test_examples_folder_applies_with_kubectl(
    control_plane: ControlPlane, wattwise_crds: list[str], k8s_cleanup: Cleanup
) -> None:
    """What a user runs: every example (custom resources and the opted-in pod) in one server-side apply."""
    applied = control_plane.kubectl(
        "apply", "--server-side", "--validate=strict", "-f", str(REPO / "examples"), "-o", "json"
    )
    items = json.loads(applied.stdout)
    for item in items.get("items", [items]):
        k8s_cleanup.add(item)
    assert sorted(i["metadata"]["name"] for i in items.get("items", [items])) == sorted(
        _load(p)["metadata"]["name"] for p in ALL_EXAMPLES
    )


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_object_is_rejected_with_its_message(
    path: pathlib.Path, wattwise_crds: list[str], kube_api: KubeApi, k8s_cleanup: Cleanup
) -> None:
    obj = _load(path)
    with pytest.raises(ApiException) as rejected:
        k8s_cleanup.add(_create(kube_api, obj))  # registered only if wrongly accepted
    body = str(rejected.value.body)
    assert rejected.value.status in (400, 422), body
    assert _expectation(path) in body


def test_status_is_written_only_through_the_status_subresource(
    wattwise_crds: list[str], kube_api: KubeApi, k8s_cleanup: Cleanup
) -> None:
    obj = _load(REPO / "examples" / "powerbudget-rack.yaml")
    name = obj["metadata"]["name"] = "status-subresource"
    k8s_cleanup.add(_create(kube_api, obj))
    path = _path("PowerBudget", name)

    updated = _patch(kube_api, path, {"status": {"facilityDrawWatts": 1234.0}})
    assert "facilityDrawWatts" not in updated.get("status", {}), "the main resource must ignore status"

    _patch(kube_api, f"{path}/status", {"status": {"facilityDrawWatts": 1234.0}, "spec": {"capWatts": 1}})
    stored = rest_call(kube_api.api_client, "GET", path)
    assert stored["status"]["facilityDrawWatts"] == 1234.0
    assert stored["spec"]["capWatts"] == obj["spec"]["capWatts"], "the status subresource must ignore spec"


def test_kubectl_get_powerbudgets_shows_the_printer_columns(
    control_plane: ControlPlane, wattwise_crds: list[str], kube_api: KubeApi, k8s_cleanup: Cleanup
) -> None:
    obj = _load(REPO / "examples" / "powerbudget-rack.yaml")
    k8s_cleanup.add(_create(kube_api, obj))
    crd = _load(CRD_DIR / "wattwise.dev_powerbudgets.yaml")
    columns = [
        c["name"].upper() for c in crd["spec"]["versions"][0]["additionalPrinterColumns"] if not c.get("priority")
    ]

    table = control_plane.kubectl("get", "powerbudgets").stdout.splitlines()
    header = table[0].split()
    assert header[0] == "NAME"
    assert [h for h in header[1:]] == columns
    row = next(line.split() for line in table[1:] if line.split()[0] == obj["metadata"]["name"])
    assert row[header.index("CAP")] == str(obj["spec"]["capWatts"])

    short = control_plane.kubectl("get", "pb", obj["metadata"]["name"], "-o", "name").stdout.strip()
    assert short == f"powerbudget.wattwise.dev/{obj['metadata']['name']}"


def test_unknown_field_is_dropped_without_strict_validation(
    wattwise_crds: list[str], control_plane: ControlPlane, k8s_cleanup: Cleanup
) -> None:
    """The contrast that makes the strict case meaningful: by default the API server prunes unknown fields."""
    obj = _load(REPO / "tests" / "fixtures" / "invalid" / "pb_unknown_field.yaml")
    created = rest_call(control_plane.api_client, "POST", f"/apis/{GROUP}/{VERSION}/powerbudgets", body=obj)
    k8s_cleanup.add(created)
    assert "capKilowatts" not in created["spec"]
