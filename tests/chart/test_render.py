"""The chart rendered by real Helm: what each value switches, what the values schema and the `fail` rules refuse."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from tests.chart import manifests
from tests.chart.helm import CHART, Helm, HelmFailed, Manifest, find, kinds


def _env(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _agent(docs: list[Manifest]) -> tuple[dict[str, Any], dict[str, Any]]:
    daemonset = find(docs, "DaemonSet")
    return daemonset["spec"]["template"]["spec"], daemonset["spec"]["template"]["spec"]["containers"][0]


def test_default_release_renders_every_component(rendered: dict[str, list[Manifest]]) -> None:
    assert kinds(rendered["default"]) == {
        ("ServiceAccount", "wattwise-operator"),
        ("ClusterRole", "wattwise-operator"),
        ("ClusterRoleBinding", "wattwise-operator"),
        ("Service", "wattwise-operator"),
        ("Deployment", "wattwise-operator"),
        ("ClusterKopfPeering", "wattwise"),
        ("ServiceAccount", "wattwise-extender"),
        ("Service", "wattwise-extender"),
        ("Deployment", "wattwise-extender"),
        ("PodDisruptionBudget", "wattwise-extender"),
        ("ServiceAccount", "wattwise-scheduler"),
        ("ConfigMap", "wattwise-scheduler"),
        ("ClusterRoleBinding", "wattwise-scheduler-as-kube-scheduler"),
        ("ClusterRoleBinding", "wattwise-scheduler-as-volume-scheduler"),
        ("Role", "wattwise-scheduler-leader-election"),
        ("RoleBinding", "wattwise-scheduler-leader-election"),
        ("RoleBinding", "wattwise-scheduler-authentication-reader"),
        ("Deployment", "wattwise-scheduler"),
        ("ServiceAccount", "wattwise-agent"),
        ("DaemonSet", "wattwise-agent"),
    }


@pytest.mark.parametrize("extra", [[], ["--set", "agent.backend=sim"], ["--set", "serviceMonitor.enabled=true"]])
def test_helm_lint_strict_passes(helm: Helm, extra: list[str]) -> None:
    out = helm.run("lint", "--strict", str(CHART), "--kube-version", "v1.37.2", *extra)
    assert "0 chart(s) failed" in out


def test_nvml_agent_gets_device_access_and_nothing_more(rendered: dict[str, list[Manifest]]) -> None:
    pod, container = _agent(rendered["default"])
    env = _env(container)
    assert pod["runtimeClassName"] == "nvidia"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    assert env["WATTWISE_BACKEND"] == "nvml"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert security["runAsUser"] == 0 and not security.get("privileged")
    assert "nvidia.com/gpu" not in str(container["resources"])  # GPUs stay allocatable to workloads
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["pod-resources"] == {
        "name": "pod-resources",
        "mountPath": "/var/lib/kubelet/pod-resources",
        "readOnly": True,
    }
    assert env["WATTWISE_POD_RESOURCES_SOCKET"] == "/var/lib/kubelet/pod-resources/kubelet.sock"


def test_agent_identity_comes_from_the_downward_api_and_a_projected_token(
    rendered: dict[str, list[Manifest]],
) -> None:
    pod, container = _agent(rendered["default"])
    env = _env(container)
    assert env["WATTWISE_NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["WATTWISE_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert pod["automountServiceAccountToken"] is False
    (token,) = [v for v in pod["volumes"] if v["name"] == "operator-token"]
    source = token["projected"]["sources"][0]["serviceAccountToken"]
    assert source == {"path": "token", "audience": "wattwise-operator", "expirationSeconds": 3600}
    assert env["WATTWISE_TOKEN_FILE"] == "/var/run/secrets/wattwise/token"


def test_sim_backend_runs_restricted_on_every_node(rendered: dict[str, list[Manifest]]) -> None:
    pod, container = _agent(rendered["sim"])
    env = _env(container)
    assert env["WATTWISE_BACKEND"] == "sim"
    assert (env["WATTWISE_SIM_GPUS"], env["WATTWISE_SIM_MODEL"]) == ("4", "a100")
    assert "runtimeClassName" not in pod and "nodeSelector" not in pod
    assert "NVIDIA_VISIBLE_DEVICES" not in env
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532


def test_measuring_only_agent_is_non_root_without_pod_resources(rendered: dict[str, list[Manifest]]) -> None:
    pod, container = _agent(rendered["nvml-measure-only"])
    assert "runtimeClassName" not in pod
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert all("hostPath" not in v for v in pod["volumes"])
    assert _env(container)["WATTWISE_POD_RESOURCES_SOCKET"] == "none"


def test_components_find_each_other_in_any_release_and_namespace(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["everything"]
    operator_url = "https://power-wattwise-operator.gpu-power.svc:8080"  # operator.tls.secretName is set
    _, agent = _agent(docs)
    assert _env(agent)["WATTWISE_OPERATOR_URL"] == operator_url
    (extender,) = manifests.containers(docs, "extender")
    assert f"--operator-url={operator_url}" in extender["args"]
    assert _env(extender)["WATTWISE_EXTENDER_SCHEDULER_NAMES"] == '["power-aware"]'
    config = yaml.safe_load(find(docs, "ConfigMap", "power-wattwise-scheduler")["data"]["config.yaml"])
    assert config["extenders"][0]["urlPrefix"] == "http://power-wattwise-extender.gpu-power.svc:8888"
    assert config["profiles"] == [{"schedulerName": "power-aware"}]
    assert config["leaderElection"]["resourceName"] == "power-aware"
    assert config["leaderElection"]["resourceNamespace"] == "gpu-power"
    lease_role = find(docs, "Role", "power-wattwise-scheduler-leader-election")
    assert lease_role["rules"][0]["resourceNames"] == ["power-aware"]


def test_optional_objects_appear_only_when_enabled(rendered: dict[str, list[Manifest]]) -> None:
    default = {kind for kind, _ in kinds(rendered["default"])}
    assert not default & {"ServiceMonitor", "PodMonitor"}
    assert ("ConfigMap", "wattwise-dashboard") not in kinds(rendered["default"])
    docs = rendered["everything"]
    monitors = {n for k, n in kinds(docs) if k == "ServiceMonitor"}
    assert monitors == {"power-wattwise-operator", "power-wattwise-extender"}
    assert find(docs, "PodMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    dashboard = find(docs, "ConfigMap", "power-wattwise-dashboard")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["wattwise.json"].lstrip().startswith("{")


def test_operator_only_release(rendered: dict[str, list[Manifest]]) -> None:
    components = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in rendered["operator-only"]}
    assert find(rendered["operator-only"], "Deployment")["spec"]["replicas"] == 1
    assert components == {"operator"}
    assert "PodDisruptionBudget" not in {d["kind"] for d in rendered["operator-only"]}


def test_image_pinned_by_digest_wins_over_tag(rendered: dict[str, list[Manifest]]) -> None:
    (operator,) = manifests.containers(rendered["everything"], "operator")
    assert operator["image"] == "ghcr.io/wattwise/wattwise@sha256:" + "ab" * 32
    (default_operator,) = manifests.containers(rendered["default"], "operator")
    assert default_operator["image"] == "ghcr.io/wattwise/wattwise:0.1.0"


@pytest.mark.parametrize(
    ("kube_version", "tag", "expected"),
    [
        ("v1.37.2", "", "registry.k8s.io/kube-scheduler:v1.37.2"),
        ("v1.31.4", "", "registry.k8s.io/kube-scheduler:v1.31.4"),
        # managed clusters report a suffix the upstream image has no tag for
        ("v1.31.4-eks-1234567", "", "registry.k8s.io/kube-scheduler:v1.31.4"),
        ("v1.30.8-gke.1051000", "", "registry.k8s.io/kube-scheduler:v1.30.8"),
        ("v1.31.4", "v1.31.1", "registry.k8s.io/kube-scheduler:v1.31.1"),
    ],
)
def test_scheduler_image_follows_the_cluster_version(helm: Helm, kube_version: str, tag: str, expected: str) -> None:
    docs = helm.template({"scheduler": {"image": {"tag": tag}}}, kube_version=kube_version)
    (scheduler,) = manifests.containers(docs, "scheduler")
    assert scheduler["image"] == expected


def test_scheduler_pods_roll_when_their_configuration_changes(helm: Helm) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = find(helm.template(values), "Deployment", "wattwise-scheduler")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) == checksum({"scheduler": {"verbosity": 4}})
    assert checksum({}) != checksum({"scheduler": {"name": "other"}})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"operater": {}}, "additional properties 'operater' not allowed"),
        ({"agent": {"bakend": "sim"}}, "additional properties 'bakend' not allowed"),
        ({"agent": {"sim": {"gpu": 2}}}, "additional properties 'gpu' not allowed"),
        ({"extender": {"resources": {"requests": {"cpuu": "1"}}}}, "additional properties 'cpuu' not allowed"),
        ({"agent": {"backend": "cuda"}}, "agent/backend"),
        ({"extender": {"defaultTier": "standard"}}, "additional properties 'defaultTier' not allowed"),
        ({"defaultTier": "urgent"}, "defaultTier"),
        ({"agent": {"tokenExpirationSeconds": 60}}, "agent/tokenExpirationSeconds"),
        ({"agent": {"envelopeIntervalSeconds": 0.001}}, "agent/envelopeIntervalSeconds"),
        ({"image": {"digest": "latest"}}, "image/digest"),
        ({"scheduler": {"image": {"tag": "1.31"}}}, "scheduler/image/tag"),
    ],
)
def test_values_schema_refuses_typos_and_bad_values(helm: Helm, values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmFailed) as failure:
        helm.template(values)
    assert message in failure.value.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"agent": {"gpuNodeSelector": None}}, "agent.backend=nvml needs agent.gpuNodeSelector"),
        ({"extender": {"enabled": False}}, "scheduler.enabled=true needs extender.enabled=true"),
        (
            {"operator": {"replicas": 1, "podDisruptionBudget": {"enabled": True, "minAvailable": 1}}},
            "operator.podDisruptionBudget.enabled=true needs operator.replicas >= 2",
        ),
        ({"extender": {"replicas": 1}}, "extender.podDisruptionBudget.enabled=true needs extender.replicas >= 2"),
        (
            {"agent": {"intervalSeconds": 2, "envelopeIntervalSeconds": 3}},
            "agent.envelopeIntervalSeconds must be 0 (envelopes ignored) or at most agent.intervalSeconds",
        ),
        (
            {"operator": {"replicas": 2, "podDisruptionBudget": {"enabled": True, "minAvailable": 2}}},
            "operator.podDisruptionBudget.minAvailable must be below operator.replicas",
        ),
    ],
)
def test_cross_value_rules_fail_with_a_reason(helm: Helm, values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmFailed) as failure:
        helm.template(values)
    assert message in failure.value.stderr


def test_a_sim_agent_needs_no_gpu_selector(helm: Helm) -> None:
    docs = helm.template({"agent": {"backend": "sim", "gpuNodeSelector": None}})
    pod, _ = _agent(docs)
    assert "nodeSelector" not in pod


def _e2e_kind_helm_flags() -> list[str]:
    """The --set flags `hack/e2e-kind.sh` installs the chart with, its shell variables given sample values."""
    script = (CHART.parents[1] / "hack" / "e2e-kind.sh").read_text().replace("\\\n", " ")
    (command,) = [line for line in script.splitlines() if line.strip().startswith('"$HELM" install')]
    samples = {
        "${IMAGE%%:*}": "wattwise",
        "${IMAGE##*:}": "e2e",
        "${SERVER_VERSION%%-*}": "v1.37.2",
        "$REPO": str(CHART.parents[1]),
        "$NAMESPACE": "wattwise-system",
        "$TIMEOUT": "180s",
    }
    for variable, value in samples.items():
        command = command.replace(variable, value)
    words = shlex.split(command)
    return [w for i, w in enumerate(words) if w.startswith("--set") or words[i - 1].startswith("--set")]


def test_the_kind_end_to_end_values_render(helm: Helm) -> None:
    flags = _e2e_kind_helm_flags()
    assert "agent.backend=sim" in flags
    docs = helm.template(extra=flags)
    assert manifests.problems(docs) == []
    pod, container = _agent(docs)
    assert container["image"] == "wattwise:e2e" and container["imagePullPolicy"] == "Never"
    assert pod["tolerations"] == [{"operator": "Exists"}]


#: Schema nodes that are Kubernetes types or Helm's, checked by the API server or not ours: free-form on purpose.
FREE_FORM = {
    "/global",
    "/$defs/affinity/nodeAffinity",
    "/$defs/affinity/podAffinity",
    "/$defs/affinity/podAntiAffinity",
    "/$defs/extraEnv/items/valueFrom",
    "/$defs/networkPolicyPeers/items/namespaceSelector",
    "/$defs/networkPolicyPeers/items/podSelector",
    "/$defs/networkPolicyPeers/items/ipBlock",
}


def _object_schemas(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append((path, node))
        for key, value in node.items():
            step = "" if key in ("properties", "oneOf") else f"/{key}"
            found += _object_schemas(value, path + step)
    elif isinstance(node, list):
        for item in node:
            found += _object_schemas(item, path)
    return found


def test_values_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects = [
        path
        for path, node in _object_schemas(schema)
        if path not in FREE_FORM
        and node.get("additionalProperties") is not False
        # string maps (labels, nodeSelector) constrain their values instead
        and node.get("additionalProperties") != {"type": "string"}
    ]
    assert open_objects == []


def test_network_policies_admit_each_components_clients_only(rendered: dict[str, list[Manifest]]) -> None:
    assert "NetworkPolicy" not in {d["kind"] for d in rendered["default"]}
    docs = rendered["everything"]
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert set(policies) == {f"power-wattwise-{c}" for c in ("operator", "extender", "agent", "scheduler")}

    def clients(component: str) -> list[str]:
        (rule,) = policies[f"power-wattwise-{component}"]["ingress"]
        return [
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] if "podSelector" in peer else str(peer)
            for peer in rule["from"]
        ]

    monitoring = str({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}})
    assert clients("operator") == ["agent", "extender", monitoring]
    assert clients("extender") == ["scheduler", str({"ipBlock": {"cidr": "10.0.0.0/24"}}), monitoring]
    assert clients("agent") == [monitoring]
    assert all(spec["policyTypes"] == ["Ingress"] for spec in policies.values())


def test_without_scrapers_nothing_may_reach_the_agent(helm: Helm) -> None:
    docs = helm.template({"networkPolicy": {"enabled": True}})
    assert find(docs, "NetworkPolicy", "wattwise-agent")["spec"]["ingress"] == []
    assert manifests.problems(docs) == []
