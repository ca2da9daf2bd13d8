"""The chart and the code agree: CRD copies, the scheduler configuration, ports, URLs, flags and environment.

Each test takes the truth from the component (its parser, its settings, its constants) rather than from a copy,
so a renamed flag or a moved default fails here instead of in a cluster.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import subprocess
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from tests.chart import manifests
from tests.chart.helm import CHART, REPO, Helm, Manifest, find
from tests.chart.scenarios import SCENARIOS

TOP_CRDS = REPO / "crds"
CHART_CRDS = CHART / "crds"


def _crd_files(directory: pathlib.Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*.yaml"))}


#: The CRD only the operator's deployment needs (kopf peering): a copy of the operator's file; see mk/chart.mk.
PEERING_CRD = REPO / "deploy" / "rbac" / "kopf-peering-crd.yaml"
CHART_PEERING_CRD = "kopf.dev_clusterkopfpeerings.yaml"


def test_chart_crds_are_byte_identical_copies_of_crds() -> None:
    top, chart = _crd_files(TOP_CRDS), _crd_files(CHART_CRDS)
    assert top, "no CRDs in crds/"
    top[CHART_PEERING_CRD] = PEERING_CRD.read_bytes()
    differing = sorted(name for name in top.keys() | chart.keys() if top.get(name) != chart.get(name))
    assert differing == [], f"charts/wattwise/crds differs from crds/ in {differing}: run `make crds-sync`"


def test_crds_sync_check_target_agrees() -> None:
    result = subprocess.run(["make", "-s", "crds-sync-check"], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def _scheduler_config(docs: list[Manifest]) -> Any:
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-scheduler")]
    return yaml.safe_load(config_map["data"]["config.yaml"])


def test_scheduler_config_is_the_shipped_one(rendered: dict[str, list[Manifest]]) -> None:
    from wattwise.scheduler_extender import schedconfig

    config = _scheduler_config(rendered["default"])
    assert config == schedconfig.shipped()
    assert config == yaml.safe_load((REPO / "deploy" / "scheduler" / "kube-scheduler-config.yaml").read_text())


@pytest.mark.parametrize(("release", "namespace"), [("power", "gpu-power"), ("wattwise", "ops")])
def test_scheduler_config_follows_release_and_namespace(helm: Helm, release: str, namespace: str) -> None:
    from wattwise.scheduler_extender import schedconfig

    config = _scheduler_config(helm.template(release=release, namespace=namespace))
    prefix = "wattwise" if release == "wattwise" else f"{release}-wattwise"
    expected = schedconfig.render(
        f"http://{prefix}-extender.{namespace}.svc:8888",
        include_default_profile=False,
        leader_election_namespace=namespace,
    )
    assert config == expected


def _container(docs: list[Manifest], component: str) -> Mapping[str, Any]:
    (container,) = manifests.containers(docs, component)
    return container


def _literal_env(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _parse(argv: list[str]) -> argparse.Namespace:
    from wattwise.cli import build_parser

    return build_parser().parse_args(argv)


@pytest.mark.parametrize("scenario", ["default", "sim", "nvml-measure-only"])
def test_agent_environment_is_what_the_agent_reads(
    rendered: dict[str, list[Manifest]], scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wattwise.node_agent.podresources.client import DEFAULT_SOCKET
    from wattwise.telemetry import wire

    container = _container(rendered[scenario], "agent")
    env = _literal_env(container)
    for name in env:
        monkeypatch.setenv(name, env[name])
    args = _parse(container["args"])
    values = SCENARIOS[scenario][2].get("agent", {})
    assert args.backend == values.get("backend", "nvml")
    assert args.interval == 1.0
    assert args.envelope_interval == 0.1
    assert args.listen == "0.0.0.0:9402"
    assert args.token_file == wire.DEFAULT_TOKEN_FILE
    assert args.operator_url == "http://wattwise-operator.wattwise-system.svc:8080"
    assert (args.fail_safe_grace, args.fail_safe_fraction) == (30.0, 0.7)
    pod_resources = values.get("podResources", {}).get("enabled", True)
    assert args.pod_resources_socket == (DEFAULT_SOCKET if pod_resources else "none")
    if args.backend == "sim":
        assert (args.sim_gpus, args.sim_model) == (4, "a100")
    unknown = {name for name in env if name.startswith("WATTWISE_")} - _agent_env_names()
    assert unknown == set()


def _agent_env_names() -> set[str]:
    from wattwise.node_agent import cli

    return set(re.findall(r"_env(?:_flag)?\(\"(WATTWISE_[A-Z_]+)\"", pathlib.Path(cli.__file__).read_text()))


def test_agent_token_is_minted_for_the_operator(rendered: dict[str, list[Manifest]]) -> None:
    from wattwise.telemetry import wire

    daemonset = find(rendered["default"], "DaemonSet")
    volumes = {v["name"]: v for v in daemonset["spec"]["template"]["spec"]["volumes"]}
    source = volumes["operator-token"]["projected"]["sources"][0]["serviceAccountToken"]
    mounts = {m["name"]: m["mountPath"] for m in _container(rendered["default"], "agent")["volumeMounts"]}
    assert source["audience"] == wire.TOKEN_AUDIENCE
    assert f"{mounts['operator-token']}/{source['path']}" == wire.DEFAULT_TOKEN_FILE


@pytest.mark.parametrize("scenario", ["default", "everything"])
def test_extender_flags_and_environment_are_what_the_extender_reads(
    rendered: dict[str, list[Manifest]], scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wattwise.scheduler_extender.settings import ExtenderSettings

    container = _container(rendered[scenario], "extender")
    env = _literal_env(container)
    # SSL_CERT_FILE: the CA bundle httpx (the live-state client) trusts, set with operator.tls.secretName.
    fields = {f"WATTWISE_EXTENDER_{name.upper()}" for name in ExtenderSettings.model_fields} | {"SSL_CERT_FILE"}
    assert set(env) - fields == set()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = ExtenderSettings()
    expected_tier = SCENARIOS[scenario][2].get("defaultTier", "standard")
    args = _parse(container["args"])
    assert args.port == container["ports"][0]["containerPort"]
    scheduler_name = SCENARIOS[scenario][2].get("scheduler", {}).get("name", "wattwise-scheduler")
    assert settings.scheduler_names == frozenset({scheduler_name})
    assert settings.default_tier.value == expected_tier


def test_extender_default_operator_url_is_the_charts_operator_service(rendered: dict[str, list[Manifest]]) -> None:
    from wattwise.scheduler_extender.settings import ExtenderSettings

    service = find(rendered["default"], "Service", "wattwise-operator")
    port = service["spec"]["ports"][0]["port"]
    assert (
        ExtenderSettings.model_fields["operator_url"].default == f"http://wattwise-operator.wattwise-system.svc:{port}"
    )


def test_probe_and_metrics_ports_are_the_ports_the_components_listen_on(rendered: dict[str, list[Manifest]]) -> None:
    for component in ("operator", "extender", "agent"):
        container = _container(rendered["default"], component)
        ports = {p["name"] for p in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports


@pytest.mark.parametrize("scenario", ["default", "everything"])
def test_operator_flags_are_what_the_operator_reads(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    _, namespace, values = SCENARIOS[scenario]
    docs = rendered[scenario]
    container = _container(docs, "operator")
    args = _parse(container["args"])
    agent_account = find(docs, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"]
    assert args.agent_service_account == [f"{namespace}/{agent_account}"]
    assert args.listen == f"0.0.0.0:{container['ports'][0]['containerPort']}"
    assert args.peering == find(docs, "ClusterKopfPeering")["metadata"]["name"]
    assert not args.standalone
    assert args.default_tier == values.get("defaultTier", "standard")
    operator_env = {e["name"]: e.get("valueFrom") for e in container["env"]}
    # The replica's peering identity (runtime.OperatorConfig.identity) is its pod's name.
    assert operator_env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_operator_token_audience_is_the_agents(rendered: dict[str, list[Manifest]]) -> None:
    from wattwise.telemetry import wire

    args = _parse(_container(rendered["default"], "operator")["args"])
    assert args.audience == wire.TOKEN_AUDIENCE


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_operator_rbac_is_the_operators_own_list(rendered: dict[str, list[Manifest]]) -> None:
    """deploy/rbac/operator.yaml is what the operator's cluster tests run under; the chart grants the same verbs,
    narrowing only peering get/patch to the release's own ClusterKopfPeering."""
    shipped = [d for d in yaml.safe_load_all((REPO / "deploy" / "rbac" / "operator.yaml").read_text()) if d]
    expected = find(shipped, "ClusterRole")["rules"]
    chart = find(rendered["default"], "ClusterRole", "wattwise-operator")["rules"]
    assert _grants(chart) == _grants(expected)
    narrowed = [rule for rule in chart if rule.get("resourceNames")]
    assert [(rule["resources"], rule["resourceNames"]) for rule in narrowed] == [
        (["clusterkopfpeerings"], ["wattwise"])
    ]
    assert find(rendered["default"], "ClusterKopfPeering")["metadata"]["name"] == "wattwise"


def _mounted_from_secret(docs: list[Manifest], component: str, path: str) -> tuple[str, str]:
    """(Secret name, key) that the file `path` in the component's container comes from."""
    (workload,) = [d for d in docs if d["kind"] in manifests.WORKLOADS and d["metadata"]["name"].endswith(component)]
    pod = workload["spec"]["template"]["spec"]
    for mount in pod["containers"][0]["volumeMounts"]:
        if path.startswith(mount["mountPath"] + "/"):
            (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            key = path.removeprefix(mount["mountPath"] + "/")
            items = {i["path"]: i["key"] for i in volume["secret"].get("items", [])}
            return volume["secret"]["secretName"], items.get(key, key)
    raise LookupError(f"{path} is not mounted in {component}")


def test_operator_tls_reaches_every_client(
    rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = rendered["everything"]
    secret = "power-operator-tls"
    operator = _parse(_container(docs, "operator")["args"])
    assert _mounted_from_secret(docs, "operator", operator.tls_cert) == (secret, "tls.crt")
    assert _mounted_from_secret(docs, "operator", operator.tls_key) == (secret, "tls.key")
    url = "https://power-wattwise-operator.gpu-power.svc:8080"
    agent = _container(docs, "agent")
    for name, value in _literal_env(agent).items():
        monkeypatch.setenv(name, value)
    agent_args = _parse(agent["args"])
    assert agent_args.operator_url == url
    assert _mounted_from_secret(docs, "agent", agent_args.ca_file) == (secret, "ca.crt")
    extender = _container(docs, "extender")
    assert f"--operator-url={url}" in extender["args"]
    assert _mounted_from_secret(docs, "extender", _literal_env(extender)["SSL_CERT_FILE"]) == (secret, "ca.crt")
    for probe in ("livenessProbe", "readinessProbe"):
        assert _container(docs, "operator")[probe]["httpGet"]["scheme"] == "HTTPS"


def test_the_extenders_http_client_trusts_ssl_cert_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The extender's live-state client is a default httpx client: SSL_CERT_FILE decides what it trusts."""
    import ssl

    import certifi
    import httpx

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    seen: list[str | None] = []
    real = ssl.create_default_context

    def spy(*args: Any, cafile: str | None = None, **kwargs: Any) -> ssl.SSLContext:
        seen.append(cafile)
        return real(*args, cafile=cafile, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", spy)
    httpx.AsyncClient()
    assert certifi.where() in seen
