"""The chart against the real control plane: strict server-side dry runs, and RBAC checked by SubjectAccessReview.

The dry run is the API server's own schema check (OpenAPI + CRD schemas, `--validate=strict` refuses unknown and
duplicate fields) and admission, for every scenario's manifests. The RBAC objects are applied for real (release
`rbac-check`, its own namespace) and every component's ServiceAccount is asked what it may do: each permission it
needs is allowed, and a list of things it must never do is denied.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import secrets
import sys
from collections.abc import Iterator, Sequence
from typing import Any, cast

import httpx
import pytest
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.chart import manifests
from tests.chart.helm import CHART, Helm, Manifest, find
from tests.chart.scenarios import PROMETHEUS_OPERATOR_KINDS, SCENARIOS
from tests.support import cluster_config, cluster_objects, cluster_process
from tests.support.controlplane import ControlPlane, KubeApi, install_crds
from wattwise.telemetry import wire

pytestmark = pytest.mark.cluster

FIELD_MANAGER = "wattwise-chart-tests"
RBAC_RELEASE = "rbac-check"
RBAC_NAMESPACE = "wattwise-rbac-check"
#: Not the chart's default: the test control plane already runs a `wattwise-scheduler` profile.
RBAC_SCHEDULER = "rbac-check-scheduler"


@pytest.fixture(scope="module")
def chart_crds(control_plane: ControlPlane, wattwise_crds: list[str]) -> list[str]:
    """Every CRD the chart ships (the Wattwise ones and kopf's peering), installed and Established."""
    return install_crds(control_plane.api_client, CHART / "crds")


def _yaml(docs: Sequence[Manifest]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


def _apply(plane: ControlPlane, docs: Sequence[Manifest], *, dry_run: bool) -> str:
    args = ["apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--validate=strict", "-f", "-"]
    if dry_run:
        args.insert(1, "--dry-run=server")
    return plane.kubectl(*args, input=_yaml(docs)).stdout


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_manifests_pass_a_strict_server_side_dry_run(
    control_plane: ControlPlane,
    kube_api: KubeApi,
    k8s_cleanup: cluster_objects.Cleanup,
    rendered: dict[str, list[Manifest]],
    chart_crds: list[str],
    scenario: str,
) -> None:
    docs = [d for d in rendered[scenario] if d["kind"] not in PROMETHEUS_OPERATOR_KINDS]
    for namespace in sorted({d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")}):
        if namespace != "kube-system" and cluster_objects.ensure_namespace(kube_api.core, namespace):
            k8s_cleanup.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    out = _apply(control_plane, docs, dry_run=True)
    applied = [line for line in out.splitlines() if line.endswith("(server dry run)")]
    assert len(applied) == len(docs), out


def test_the_dry_run_refuses_an_unknown_field(
    control_plane: ControlPlane, rendered: dict[str, list[Manifest]], chart_crds: list[str]
) -> None:
    deployment = find(rendered["default"], "Deployment", "wattwise-extender")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["metadata"]["namespace"] = "default"
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {"limits": {"cpu": "1"}}
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "--server-side", "--validate=strict", "-f", "-", input=_yaml([broken]), check=False
    )
    assert result.returncode != 0
    assert '.spec.template.spec.containers[name="extender"].resource: field not declared in schema' in result.stderr


# --- RBAC ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Release:
    namespace: str
    accounts: dict[str, str]  # component -> ServiceAccount name
    peering: str
    scheduler_name: str
    scheduler_config: dict[str, Any]


@pytest.fixture(scope="module")
def rbac_release(control_plane: ControlPlane, helm: Helm, chart_crds: list[str]) -> Iterator[Release]:
    """The chart's ServiceAccounts, Roles, bindings and peering object, applied for real; deleted after the module."""
    docs = helm.template({"scheduler": {"name": RBAC_SCHEDULER}}, release=RBAC_RELEASE, namespace=RBAC_NAMESPACE)
    rbac_kinds = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
    rbac = [d for d in docs if d["kind"] in rbac_kinds]
    core = client.CoreV1Api(control_plane.api_client)
    created = cluster_objects.ensure_namespace(core, RBAC_NAMESPACE)
    _apply(control_plane, rbac, dry_run=False)
    accounts = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["metadata"]["name"]
        for d in docs
        if d["kind"] == "ServiceAccount"
    }
    try:
        config = yaml.safe_load(find(docs, "ConfigMap")["data"]["config.yaml"])
        yield Release(
            RBAC_NAMESPACE,
            accounts,
            find(docs, "ClusterKopfPeering")["metadata"]["name"],
            config["profiles"][0]["schedulerName"],
            config,
        )
    finally:
        control_plane.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=_yaml(rbac))
        if created:
            cleanup = cluster_objects.Cleanup(control_plane.api_client)
            cleanup.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RBAC_NAMESPACE}})
            cleanup.run()


@dataclasses.dataclass(frozen=True)
class Ask:
    """One question to the authorizer. `namespace` "@release" means the release's namespace; None: cluster."""

    verb: str
    resource: str
    group: str = ""
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        sub = f"/{self.subresource}" if self.subresource else ""
        where = f" in {self.namespace}" if self.namespace else ""
        named = f" {self.name}" if self.name else ""
        return f"{self.verb} {self.resource}{sub}.{self.group or 'core'}{named}{where}"


RELEASE_NS = "@release"
PEERING = "@peering"
LEASE = "@lease"

NEEDS: dict[str, list[Ask]] = {
    "operator": [
        Ask("list", "powerbudgets", "wattwise.dev"),
        Ask("watch", "powerbudgets", "wattwise.dev"),
        Ask("patch", "powerbudgets", "wattwise.dev", name="facility"),
        Ask("patch", "powerbudgets", "wattwise.dev", "status", name="facility"),
        Ask("watch", "workloadclasses", "wattwise.dev"),
        Ask("patch", "workloadclasses", "wattwise.dev", "status", name="chat"),
        Ask("list", "pods"),
        Ask("watch", "pods"),
        Ask("get", "pods", namespace="inference"),
        Ask("list", "nodes"),
        Ask("watch", "nodes"),
        Ask("create", "events", namespace="default"),
        Ask("create", "events", namespace="inference"),
        Ask("create", "tokenreviews", "authentication.k8s.io"),
        Ask("list", "customresourcedefinitions", "apiextensions.k8s.io"),
        Ask("watch", "customresourcedefinitions", "apiextensions.k8s.io"),
        Ask("list", "clusterkopfpeerings", "kopf.dev"),
        Ask("watch", "clusterkopfpeerings", "kopf.dev"),
        Ask("get", "clusterkopfpeerings", "kopf.dev", name=PEERING),
        Ask("patch", "clusterkopfpeerings", "kopf.dev", name=PEERING),
    ],
    "scheduler": [
        Ask("create", "pods", subresource="binding", namespace="inference"),
        Ask("create", "bindings", namespace="inference"),
        Ask("list", "pods"),
        Ask("watch", "nodes"),
        Ask("patch", "pods", subresource="status", namespace="inference"),
        Ask("create", "events", "events.k8s.io", namespace="inference"),
        Ask("create", "leases", "coordination.k8s.io", namespace=RELEASE_NS),
        Ask("get", "leases", "coordination.k8s.io", namespace=RELEASE_NS, name=LEASE),
        Ask("update", "leases", "coordination.k8s.io", namespace=RELEASE_NS, name=LEASE),
        Ask("get", "configmaps", namespace="kube-system", name="extension-apiserver-authentication"),
        Ask("list", "persistentvolumeclaims"),
        Ask("update", "persistentvolumes", name="pv-1"),
        Ask("list", "storageclasses", "storage.k8s.io"),
        Ask("create", "tokenreviews", "authentication.k8s.io"),
        Ask("create", "subjectaccessreviews", "authorization.k8s.io"),
    ],
    # The agent and the extender never call the API server.
    "agent": [],
    "extender": [],
}

#: Never, for any component.
FORBIDDEN_TO_ALL = [
    Ask("get", "secrets", namespace=RELEASE_NS),
    Ask("list", "secrets"),
    Ask("create", "pods", subresource="exec", namespace="inference"),
    Ask("create", "pods", namespace="inference"),
    Ask("patch", "nodes", name="gpu-1"),
    Ask("delete", "nodes", name="gpu-1"),
    Ask("delete", "customresourcedefinitions", "apiextensions.k8s.io", name="powerbudgets.wattwise.dev"),
    Ask("update", "customresourcedefinitions", "apiextensions.k8s.io", name="powerbudgets.wattwise.dev"),
    Ask("create", "powerbudgets", "wattwise.dev"),
    Ask("delete", "powerbudgets", "wattwise.dev", name="facility"),
    Ask("delete", "workloadclasses", "wattwise.dev", name="chat"),
    Ask("create", "clusterrolebindings", "rbac.authorization.k8s.io"),
    Ask("impersonate", "users"),
    Ask("create", "serviceaccounts", subresource="token", namespace=RELEASE_NS, name="wattwise-operator"),
    Ask("update", "deployments", "apps", namespace=RELEASE_NS, name="wattwise-operator"),
    Ask("list", "configmaps", namespace=RELEASE_NS),
]
FORBIDDEN: dict[str, list[Ask]] = {
    "operator": [
        *FORBIDDEN_TO_ALL,
        Ask("delete", "pods", namespace="inference"),
        Ask("patch", "nodes", subresource="status", name="gpu-1"),
        Ask("delete", "clusterkopfpeerings", "kopf.dev", name=PEERING),
        Ask("patch", "clusterkopfpeerings", "kopf.dev", name="another-operator"),
        Ask("create", "leases", "coordination.k8s.io", namespace=RELEASE_NS),
    ],
    "scheduler": [
        *FORBIDDEN_TO_ALL,
        Ask("update", "leases", "coordination.k8s.io", namespace=RELEASE_NS, name="someone-elses-lease"),
        Ask("get", "configmaps", namespace="kube-system", name="kube-proxy"),
        Ask("update", "powerbudgets", "wattwise.dev", name="facility"),
        Ask("create", "tokenreviews", "authentication.k8s.io", subresource="status"),
    ],
    "agent": [
        *FORBIDDEN_TO_ALL,
        Ask("get", "pods", namespace="inference"),
        Ask("list", "nodes"),
        Ask("patch", "nodes", subresource="status", name="gpu-1"),
        Ask("create", "tokenreviews", "authentication.k8s.io"),
        Ask("list", "powerbudgets", "wattwise.dev"),
        Ask("create", "events", namespace=RELEASE_NS),
    ],
    "extender": [
        *FORBIDDEN_TO_ALL,
        Ask("list", "pods"),
        Ask("list", "nodes"),
        Ask("create", "pods", subresource="binding", namespace="inference"),
        Ask("list", "workloadclasses", "wattwise.dev"),
        Ask("get", "leases", "coordination.k8s.io", namespace=RELEASE_NS, name=LEASE),
    ],
}


def _allowed(api: client.AuthorizationV1Api, release: Release, component: str, ask: Ask) -> bool:
    account = release.accounts[component]
    names = {PEERING: release.peering, LEASE: release.scheduler_name}
    namespace = release.namespace if ask.namespace == RELEASE_NS else ask.namespace
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{release.namespace}:{account}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{release.namespace}", "system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(
                verb=ask.verb,
                group=ask.group,
                resource=ask.resource,
                subresource=ask.subresource,
                namespace=namespace,
                name=names.get(ask.name or "", ask.name),
            ),
        )
    )
    status = api.create_subject_access_review(review).status
    return bool(status is not None and status.allowed)


@pytest.mark.parametrize("component", sorted(NEEDS))
def test_each_component_may_do_what_it_needs(kube_api: KubeApi, rbac_release: Release, component: str) -> None:
    api = kube_api.authorization
    refused = [str(ask) for ask in NEEDS[component] if not _allowed(api, rbac_release, component, ask)]
    assert refused == []


@pytest.mark.parametrize("component", sorted(FORBIDDEN))
def test_each_component_may_not_do_more(kube_api: KubeApi, rbac_release: Release, component: str) -> None:
    api = kube_api.authorization
    granted = [str(ask) for ask in FORBIDDEN[component] if _allowed(api, rbac_release, component, ask)]
    assert granted == []


def test_components_without_rbac_are_bound_to_nothing(helm: Helm) -> None:
    docs = helm.template(release=RBAC_RELEASE, namespace=RBAC_NAMESPACE)
    bound = {
        subject["name"]
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        for subject in d.get("subjects", [])
    }
    assert f"{RBAC_RELEASE}-wattwise-agent" not in bound
    assert f"{RBAC_RELEASE}-wattwise-extender" not in bound
    for component in ("agent", "extender"):
        (workload,) = [d for d in docs if d["kind"] in manifests.WORKLOADS and component in d["metadata"]["name"]]
        assert workload["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_the_operator_token_gets_exactly_those_answers_from_kubectl(
    control_plane: ControlPlane, rbac_release: Release
) -> None:
    """The same rules through a real token and `kubectl auth can-i` (SelfSubjectAccessReview), not just SAR."""
    token = control_plane.service_account_token(rbac_release.namespace, rbac_release.accounts["operator"])
    kubeconfig = control_plane.kubeconfig_for_token(token, f"{rbac_release.namespace}-operator")

    def can_i(*args: str) -> bool:
        result = control_plane.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
        return result.stdout.strip() == "yes"

    assert can_i("watch", "powerbudgets.wattwise.dev")
    assert can_i("patch", "powerbudgets.wattwise.dev", "--subresource=status")
    assert can_i("create", "tokenreviews.authentication.k8s.io")
    assert not can_i("get", "secrets", "-A")
    assert not can_i("delete", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i("create", "pods/exec", "-n", "default")


# --- the components themselves, under their chart identities ---------------------------------------------


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERC")}


def _forbidden_lines(log: pathlib.Path) -> list[str]:
    """Refused API requests in a log: the client (`403 Forbidden`), kopf (`APIForbiddenError`) and kube-scheduler
    (`... is forbidden: User ...`) all say "forbidden"; a bare 403 would match timestamps' milliseconds."""
    return [line for line in log.read_text(errors="replace").splitlines() if re.search(r"[Ff]orbidden", line)]


def _metric(url: str, name: str, labels: dict[str, str]) -> float | None:
    """One sample from a Prometheus endpoint, or None (not served yet, or no such sample)."""
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
def test_the_operator_agent_and_extender_run_under_their_chart_identities(
    control_plane: ControlPlane,
    kube_api: KubeApi,
    k8s_cleanup: cluster_objects.Cleanup,
    make_gpu_node: Any,
    rbac_release: Release,
    tmp_path: pathlib.Path,
    tls: bool,
) -> None:
    """The real `wattwise operator` as the chart's operator ServiceAccount, a real `wattwise agent` (simulated
    GPUs) presenting a token of the chart's agent ServiceAccount, audience and pod binding as the DaemonSet's
    projected volume, and a real `wattwise extender`: the operator wins the peering, accepts the agent's reports
    and writes the budget's status, the extender reads the live state, and nothing any of them does is refused.
    With `tls`, as `operator.tls.secretName` wires them: the operator serves HTTPS, the agent trusts the CA
    through WATTWISE_OPERATOR_CA and the extender through SSL_CERT_FILE."""
    release = rbac_release
    token = control_plane.service_account_token(release.namespace, release.accounts["operator"])
    kubeconfig = control_plane.kubeconfig_for_token(token, f"{release.namespace}-operator")
    budget = f"rbac-check-{secrets.token_hex(3)}"
    node = make_gpu_node(budget, 2, labels={"rbac-check": budget})
    k8s_cleanup.add(
        kube_api.custom.create_cluster_custom_object(
            "wattwise.dev",
            "v1alpha1",
            "powerbudgets",
            {
                "apiVersion": "wattwise.dev/v1alpha1",
                "kind": "PowerBudget",
                "metadata": {"name": budget},
                "spec": {"capWatts": 10000, "nodeSelector": {"matchLabels": {"rbac-check": budget}}, "mode": "Monitor"},
            },
        )
    )
    agent_pod = k8s_cleanup.add(
        kube_api.core.create_namespaced_pod(
            release.namespace,
            {  # type: ignore[arg-type]
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"agent-{budget}"},
                "spec": {
                    "nodeName": node,
                    "serviceAccountName": release.accounts["agent"],
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "agent", "image": "wattwise:test"}],
                },
            },
        )
    )
    agent_token = tmp_path / "agent.token"
    agent_token.write_text(
        control_plane.service_account_token(
            release.namespace,
            release.accounts["agent"],
            audiences=(wire.TOKEN_AUDIENCE,),
            bound_pod=agent_pod.metadata.name,
        )
    )
    operator_port, agent_port, extender_port = cluster_process.reserve_ports(3)
    supervisor = cluster_process.Supervisor(tmp_path / "logs")
    wattwise = [sys.executable, "-m", "wattwise"]
    scheme = "https" if tls else "http"
    operator_url = f"{scheme}://127.0.0.1:{operator_port}"
    tls_flags = [f"--tls-cert={control_plane.pki.serving_cert}", f"--tls-key={control_plane.pki.serving_key}"]
    ca_env = {"WATTWISE_OPERATOR_CA": str(control_plane.ca_file)} if tls else {}
    operator_argv = [
        *wattwise,
        "operator",
        f"--kubeconfig={kubeconfig}",
        f"--listen=127.0.0.1:{operator_port}",
        f"--agent-service-account={release.namespace}/{release.accounts['agent']}",
        f"--peering={release.peering}",
        "--status-interval=1",
        *(tls_flags if tls else []),
    ]
    agent_argv = [
        *wattwise,
        "agent",
        "--backend=sim",
        "--sim-gpus=2",
        f"--node-name={node}",
        f"--pod-name={agent_pod.metadata.name}",
        f"--operator-url={operator_url}",
        f"--token-file={agent_token}",
        f"--listen=127.0.0.1:{agent_port}",
        "--pod-resources-socket=none",
    ]
    extender_argv = [
        *wattwise,
        "extender",
        "--host=127.0.0.1",
        f"--port={extender_port}",
        f"--operator-url={operator_url}",
    ]
    extender_env = {**_child_env(), **({"SSL_CERT_FILE": str(control_plane.ca_file)} if tls else {})}
    try:
        operator = supervisor.start("operator", operator_argv, _child_env())
        ready = f"{operator_url}/readyz"
        ca = control_plane.ca_file if tls else None
        cluster_process.wait_until(lambda: cluster_process.http_ready(ready, ca_file=ca), "/readyz", supervisor, 90)
        agent = supervisor.start("agent", agent_argv, {**_child_env(), **ca_env})
        extender = supervisor.start("extender", extender_argv, extender_env)
        agent_metrics = f"http://127.0.0.1:{agent_port}/metrics"
        connected = {"node": node, "mode": "connected"}
        cluster_process.wait_until(
            lambda: _metric(agent_metrics, "wattwise_agent_operator_mode", connected) == 1.0,
            "agent connected to the operator",
            supervisor,
            60,
        )
        extender_metrics = f"http://127.0.0.1:{extender_port}/metrics"
        cluster_process.wait_until(
            lambda: (_metric(extender_metrics, "wattwise_extender_state_refreshes_total", {"result": "ok"}) or 0) >= 1,
            "extender read the operator's live state",
            supervisor,
            60,
        )

        def status_counts_the_agents_gpus() -> bool:
            obj = cast(
                dict[str, Any],
                kube_api.custom.get_cluster_custom_object("wattwise.dev", "v1alpha1", "powerbudgets", budget),
            )
            status = obj.get("status") or {}
            return bool(status.get("conditions")) and status.get("gpus") == 2 and not status.get("staleNodes")

        cluster_process.wait_until(status_counts_the_agents_gpus, f"status of PowerBudget {budget}", supervisor, 60)
        peering = cast(
            dict[str, Any],
            kube_api.custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", release.peering),
        )
        assert peering.get("status"), "the operator never kept alive in its peering object"
    finally:
        supervisor.stop()
    assert _forbidden_lines(operator.log) == []
    assert _forbidden_lines(agent.log) == []
    assert _forbidden_lines(extender.log) == []


def test_the_secondary_scheduler_runs_under_its_chart_service_account(
    control_plane: ControlPlane,
    kube_api: KubeApi,
    k8s_cleanup: cluster_objects.Cleanup,
    make_gpu_node: Any,
    rbac_release: Release,
    tmp_path: pathlib.Path,
) -> None:
    """Upstream kube-scheduler with the chart's configuration, as the chart's scheduler ServiceAccount: it takes
    its own lease and binds a pod that names its profile, and nothing it does is refused."""
    release = rbac_release
    token = control_plane.service_account_token(release.namespace, release.accounts["scheduler"])
    kubeconfig = control_plane.kubeconfig_for_token(token, f"{release.namespace}-scheduler")
    config = {**release.scheduler_config, "clientConnection": {"kubeconfig": str(kubeconfig)}}
    config_path = tmp_path / "scheduler.yaml"
    config_path.write_text(yaml.safe_dump(config))
    node = make_gpu_node(f"rbac-check-{secrets.token_hex(3)}", 2)
    (port,) = cluster_process.reserve_ports(1)
    supervisor = cluster_process.Supervisor(tmp_path / "logs")
    argv = cluster_config.scheduler_args(
        control_plane.bin_dir / "kube-scheduler",
        config_path,
        kubeconfig,
        port,
        serving_cert=control_plane.pki.serving_cert,
        serving_key=control_plane.pki.serving_key,
    )
    pod_name = f"rbac-check-{secrets.token_hex(3)}"
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": release.namespace},
        "spec": {
            "schedulerName": release.scheduler_name,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"operator": "Exists"}],
        },
    }
    try:
        process = supervisor.start("wattwise-scheduler", argv, _child_env())
        ready = f"https://127.0.0.1:{port}/readyz"
        cluster_process.wait_until(
            lambda: cluster_process.http_ready(ready, ca_file=control_plane.ca_file),
            "scheduler /readyz",
            supervisor,
            90,
        )
        k8s_cleanup.add(kube_api.core.create_namespaced_pod(release.namespace, pod))  # type: ignore[arg-type]

        def bound() -> bool:
            spec = kube_api.core.read_namespaced_pod(pod_name, release.namespace).spec
            return spec is not None and spec.node_name == node

        cluster_process.wait_until(bound, "pod bound by the secondary scheduler", supervisor, 60)
        lease = kube_api.coordination.read_namespaced_lease(release.scheduler_name, release.namespace)
        assert lease.spec is not None and lease.spec.holder_identity
    finally:
        supervisor.stop()
    assert _forbidden_lines(process.log) == []


# --- Pod Security admission ----------------------------------------------------------------------------


PSS_NAMESPACES = {"restricted": "wattwise-pss-restricted", "baseline": "wattwise-pss-baseline"}


@pytest.fixture(scope="module")
def pss_namespaces(control_plane: ControlPlane) -> Iterator[dict[str, str]]:
    """Namespaces whose Pod Security admission enforces `restricted` and `baseline` (latest version), and the
    `nvidia` RuntimeClass a GPU cluster has (the NVIDIA GPU operator creates it), which admission looks up."""
    core = client.CoreV1Api(control_plane.api_client)
    cleanup = cluster_objects.Cleanup(control_plane.api_client)
    runtime_class = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"}}
    try:
        client.NodeV1Api(control_plane.api_client).create_runtime_class(
            client.V1RuntimeClass(metadata=client.V1ObjectMeta(name="nvidia"), handler="nvidia")
        )
        cleanup.add(runtime_class)
    except client.ApiException as error:
        if error.status != 409:
            raise
    for level, name in PSS_NAMESPACES.items():
        labels = {"pod-security.kubernetes.io/enforce": level, "pod-security.kubernetes.io/enforce-version": "latest"}
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
        cleanup.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield PSS_NAMESPACES
    finally:
        cleanup.run()


def _admitted(core: client.CoreV1Api, workload: Manifest, namespace: str) -> str | None:
    """None when a pod of `workload` would be admitted in `namespace` (dry run); else the API server's reason."""
    template = workload["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"pss-{workload['metadata']['name']}", "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }
    try:
        core.create_namespaced_pod(namespace, pod, dry_run="All")  # type: ignore[arg-type]
    except client.ApiException as error:
        if error.status == 403 and "PodSecurity" in str(error.body):
            return str(error.body)
        raise
    return None


def _workloads(docs: list[Manifest]) -> list[Manifest]:
    return [d for d in docs if d["kind"] in manifests.WORKLOADS]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_pods_meet_the_restricted_pod_security_standard(
    kube_api: KubeApi, rendered: dict[str, list[Manifest]], pss_namespaces: dict[str, str], scenario: str
) -> None:
    """Every pod but the agent's passes `restricted`; the agent does too when it neither mounts the PodResources
    socket nor sets power limits (the scenario `nvml-measure-only`)."""
    refused = {}
    for workload in _workloads(rendered[scenario]):
        reason = _admitted(kube_api.core, workload, pss_namespaces["restricted"])
        if reason is not None:
            refused[workload["metadata"]["labels"]["app.kubernetes.io/component"]] = reason
    expected = set() if scenario in ("nvml-measure-only", "operator-only") else {"agent"}
    assert set(refused) == expected, refused


def test_a_power_setting_agent_needs_the_privileged_level(
    kube_api: KubeApi, rendered: dict[str, list[Manifest]], pss_namespaces: dict[str, str]
) -> None:
    agent = find(rendered["default"], "DaemonSet")
    reason = _admitted(kube_api.core, agent, pss_namespaces["baseline"])
    assert reason is not None and "hostPath" in reason and "SYS_ADMIN" in reason, reason
