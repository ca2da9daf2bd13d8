"""Structural rules every rendered manifest must follow, checked without a cluster. Pure: documents in, problems out.

The Kubernetes schemas say whether a manifest is well-formed; these rules say whether it is what a platform team
would accept: labels on everything, no duplicates, requests and limits on every container, the restricted
security profile (with the agent's one written-down exception), probes, references that resolve (Service, PDB,
monitor and NetworkPolicy selectors and ports, ServiceAccounts, ConfigMaps, RBAC roles), and RBAC without
wildcards or Secrets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Manifest = Mapping[str, Any]

REQUIRED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)
CLUSTER_SCOPED = frozenset(
    {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace", "ClusterKopfPeering"}
)
WORKLOADS = frozenset({"Deployment", "DaemonSet", "StatefulSet"})
#: Roles the chart binds but does not ship: created by every API server's RBAC bootstrap.
UPSTREAM_ROLES = frozenset(
    {
        ("ClusterRole", "system:kube-scheduler"),
        ("ClusterRole", "system:volume-scheduler"),
        ("Role", "extension-apiserver-authentication-reader"),
    }
)
#: The restricted profile's one exception: the node agent sets GPU power limits, which NVML allows only to root
#: with CAP_SYS_ADMIN. Component label -> capabilities it may add (and so run as root).
ROOT_EXCEPTIONS: Mapping[str, frozenset[str]] = {"agent": frozenset({"SYS_ADMIN"})}
#: Host paths a pod may mount, always read-only.
ALLOWED_HOST_PATHS = frozenset({"/var/lib/kubelet/pod-resources"})
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def problems(docs: Sequence[Manifest]) -> list[str]:
    """Every rule broken by `docs` (one rendered release), as sentences; empty when all hold."""
    found: list[str] = []
    found += _identity(docs)
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            found += _workload(doc)
    found += _references(docs)
    found += _rbac(docs)
    return found


def ref(doc: Manifest) -> str:
    meta = doc.get("metadata", {})
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc.get('kind')} {ns}{meta.get('name')}"


def _identity(docs: Sequence[Manifest]) -> list[str]:
    found = []
    seen: set[tuple[str, str, str | None, str]] = set()
    for doc in docs:
        meta = doc.get("metadata") or {}
        if not doc.get("apiVersion") or not doc.get("kind") or not meta.get("name"):
            found.append(f"{ref(doc)}: apiVersion, kind and metadata.name are required")
            continue
        if not _DNS1123.match(meta["name"]) or len(meta["name"]) > 63:
            found.append(f"{ref(doc)}: name is not a DNS-1123 label of at most 63 characters")
        group = doc["apiVersion"].rpartition("/")[0]
        key = (group, doc["kind"], meta.get("namespace"), meta["name"])
        if key in seen:
            found.append(f"{ref(doc)}: rendered twice")
        seen.add(key)
        missing = [label for label in REQUIRED_LABELS if label not in (meta.get("labels") or {})]
        if missing:
            found.append(f"{ref(doc)}: missing labels {missing}")
        scoped = doc["kind"] in CLUSTER_SCOPED
        if scoped and meta.get("namespace"):
            found.append(f"{ref(doc)}: cluster-scoped kind with a namespace")
        if not scoped and not meta.get("namespace"):
            found.append(f"{ref(doc)}: namespaced kind without metadata.namespace (kubectl apply would guess)")
    return found


def _workload(doc: Manifest) -> list[str]:
    found = []
    name = ref(doc)
    spec = doc["spec"]
    template = spec["template"]
    pod = template["spec"]
    labels = template["metadata"].get("labels") or {}
    selector = spec["selector"].get("matchLabels") or {}
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        found.append(f"{name}: selector {selector} does not match the pod template's labels")
    component = labels.get("app.kubernetes.io/component", "")
    allowed_caps = ROOT_EXCEPTIONS.get(component, frozenset())
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            found.append(f"{name}: {key} is set")
    pod_security = pod.get("securityContext") or {}
    if (pod_security.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        found.append(f"{name}: pod seccompProfile is not RuntimeDefault")
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        found += _container(name, container, pod_security, allowed_caps)
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod.get("volumes", []) if "hostPath" in v}
    for volume, path in host_paths.items():
        if path not in ALLOWED_HOST_PATHS:
            found.append(f"{name}: hostPath {path} is not one of {sorted(ALLOWED_HOST_PATHS)}")
        for container in pod["containers"]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] == volume and not mount.get("readOnly"):
                    found.append(f"{name}: hostPath {path} mounted writable in {container['name']}")
    return found


def _container(
    workload: str, container: Mapping[str, Any], pod_security: Mapping[str, Any], allowed_caps: frozenset[str]
) -> list[str]:
    found = []
    where = f"{workload} container {container['name']}"
    image = container.get("image", "")
    if "@sha256:" not in image and (":" not in image.rpartition("/")[2] or image.endswith(":latest")):
        found.append(f"{where}: image {image!r} is not pinned by tag or digest")
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(kind) or {}):
                found.append(f"{where}: no {kind}.{resource}")
    for probe in ("livenessProbe", "readinessProbe"):
        if probe not in container:
            found.append(f"{where}: no {probe}")
    security = container.get("securityContext") or {}
    if security.get("privileged"):
        found.append(f"{where}: privileged")
    if security.get("allowPrivilegeEscalation") is not False:
        found.append(f"{where}: allowPrivilegeEscalation is not false")
    if security.get("readOnlyRootFilesystem") is not True:
        found.append(f"{where}: root filesystem is writable")
    capabilities = security.get("capabilities") or {}
    if capabilities.get("drop") != ["ALL"]:
        found.append(f"{where}: does not drop ALL capabilities")
    added = set(capabilities.get("add") or [])
    if not added <= allowed_caps:
        found.append(f"{where}: adds capabilities {sorted(added - allowed_caps)} outside the documented exception")
    non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    if not added and (non_root is not True or user == 0):
        found.append(f"{where}: may run as root without needing a capability")
    return found


def _references(docs: Sequence[Manifest]) -> list[str]:
    found = []
    by_kind: dict[str, dict[tuple[str | None, str], Manifest]] = {}
    for doc in docs:
        meta = doc["metadata"]
        by_kind.setdefault(doc["kind"], {})[(meta.get("namespace"), meta["name"])] = doc
    workloads = [d for d in docs if d["kind"] in WORKLOADS]

    def selected(namespace: str | None, selector: Mapping[str, str]) -> list[Manifest]:
        return [
            w
            for w in workloads
            if w["metadata"].get("namespace") == namespace
            and all((w["spec"]["template"]["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
        ]

    for service in by_kind.get("Service", {}).values():
        targets = selected(service["metadata"].get("namespace"), service["spec"].get("selector") or {})
        if len(targets) != 1:
            found.append(f"{ref(service)}: selects {len(targets)} workloads, expected 1")
            continue
        pod = targets[0]["spec"]["template"]["spec"]
        ports = {p.get("name") for c in pod["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            target = port.get("targetPort")
            if isinstance(target, str) and target not in ports:
                found.append(f"{ref(service)}: targetPort {target} is not a port of {ref(targets[0])}")
    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        targets = selected(pdb["metadata"].get("namespace"), pdb["spec"]["selector"].get("matchLabels") or {})
        if len(targets) != 1:
            found.append(f"{ref(pdb)}: selects {len(targets)} workloads, expected 1")
        elif targets[0]["spec"].get("replicas", 1) <= pdb["spec"].get("minAvailable", 0):
            found.append(f"{ref(pdb)}: minAvailable leaves no pod evictable")
    for monitor in by_kind.get("ServiceMonitor", {}).values():
        found += _service_monitor(monitor, list(by_kind.get("Service", {}).values()))
    for monitor in by_kind.get("PodMonitor", {}).values():
        targets = selected(monitor["metadata"].get("namespace"), monitor["spec"]["selector"]["matchLabels"])
        ports = {
            p.get("name") for t in targets for c in t["spec"]["template"]["spec"]["containers"] for p in c["ports"]
        }
        if not targets:
            found.append(f"{ref(monitor)}: selects no workload")
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            if endpoint["port"] not in ports:
                found.append(f"{ref(monitor)}: port {endpoint['port']} is not a container port of its pods")
    for policy in by_kind.get("NetworkPolicy", {}).values():
        found += _network_policy(policy, selected)
    accounts = by_kind.get("ServiceAccount", {})
    config_maps = by_kind.get("ConfigMap", {})
    for workload in workloads:
        namespace = workload["metadata"].get("namespace")
        pod = workload["spec"]["template"]["spec"]
        account = pod.get("serviceAccountName")
        if not account or (namespace, account) not in accounts:
            found.append(f"{ref(workload)}: serviceAccountName {account!r} is not rendered by the chart")
        for volume in pod.get("volumes", []):
            name = (volume.get("configMap") or {}).get("name")
            if name and (namespace, name) not in config_maps:
                found.append(f"{ref(workload)}: ConfigMap {name} is not rendered by the chart")
    return found


def _service_monitor(monitor: Manifest, services: list[Manifest]) -> list[str]:
    namespaces = monitor["spec"].get("namespaceSelector", {}).get("matchNames") or [monitor["metadata"]["namespace"]]
    selector = monitor["spec"]["selector"]["matchLabels"]
    targets = [
        s
        for s in services
        if s["metadata"].get("namespace") in namespaces
        and all((s["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
    ]
    if len(targets) != 1:
        return [f"{ref(monitor)}: selects {len(targets)} Services, expected 1"]
    ports = {p.get("name") for p in targets[0]["spec"]["ports"]}
    return [
        f"{ref(monitor)}: port {e['port']} is not a port of {ref(targets[0])}"
        for e in monitor["spec"]["endpoints"]
        if e["port"] not in ports
    ]


def _network_policy(policy: Manifest, selected: Callable[[str | None, Mapping[str, str]], list[Manifest]]) -> list[str]:
    """The policy applies to one workload, names its ports, and admits pods of the chart that exist."""
    namespace = policy["metadata"].get("namespace")
    targets = selected(namespace, policy["spec"]["podSelector"]["matchLabels"])
    if len(targets) != 1:
        return [f"{ref(policy)}: applies to {len(targets)} workloads, expected 1"]
    found = []
    ports = {p.get("name") for c in targets[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    for rule in policy["spec"].get("ingress", []):
        found += [
            f"{ref(policy)}: port {p['port']} is not a port of {ref(targets[0])}"
            for p in rule.get("ports", [])
            if isinstance(p["port"], str) and p["port"] not in ports
        ]
        found += [
            f"{ref(policy)}: peer {peer} selects no workload of the chart"
            for peer in rule.get("from", [])
            if "podSelector" in peer
            and "namespaceSelector" not in peer
            and not selected(namespace, peer["podSelector"].get("matchLabels") or {})
        ]
    return found


def _rbac(docs: Sequence[Manifest]) -> list[str]:
    found = []
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs}
    accounts = {(d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs if d["kind"] == "ServiceAccount"}
    for doc in docs:
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc.get("rules", []):
                for field in ("apiGroups", "resources", "verbs"):
                    if "*" in rule.get(field, []):
                        found.append(f"{ref(doc)}: wildcard in {field}")
                if "secrets" in rule.get("resources", []):
                    found.append(f"{ref(doc)}: grants access to Secrets")
        if doc["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            role = doc["roleRef"]
            namespace = doc["metadata"].get("namespace") if role["kind"] == "Role" else None
            shipped = (role["kind"], namespace, role["name"]) in roles
            if not shipped and (role["kind"], role["name"]) not in UPSTREAM_ROLES:
                found.append(f"{ref(doc)}: roleRef {role['kind']} {role['name']} is neither rendered nor upstream")
            for subject in doc.get("subjects", []):
                if subject["kind"] != "ServiceAccount" or (subject.get("namespace"), subject["name"]) not in accounts:
                    found.append(f"{ref(doc)}: subject {subject} is not a ServiceAccount of the chart")
    return found


def containers(docs: Iterable[Manifest], component: str) -> list[Mapping[str, Any]]:
    """The containers of the workload whose component label is `component`."""
    return [
        c
        for d in docs
        if d["kind"] in WORKLOADS and d["metadata"]["labels"].get("app.kubernetes.io/component") == component
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
