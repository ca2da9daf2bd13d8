"""docs/install.md works as written: its marked shell blocks run, in order, against the real control plane.

Each block under an `<!-- install: NAME -->` marker is run by bash (`set -euo pipefail`) with our kubectl and the
Helm that `make helm-bin` builds first on PATH, KUBECONFIG pointing at the test control plane, in a folder that
holds the repository's charts/, crds/, examples/ and Makefile. The one change: the namespace `wattwise-system`
becomes a namespace of this test's own per path (other tests use `wattwise-system`).

There is no kube-controller-manager: Deployments and the DaemonSet make no pods, so this proves the manifests
install, not that the pods run (`make e2e-kind` does that where Docker is available).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import subprocess
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.chart.helm import REPO, Helm
from tests.support import cluster_objects
from tests.support.controlplane import ControlPlane, KubeApi, install_crds

pytestmark = pytest.mark.cluster

INSTALL_DOC = REPO / "docs" / "install.md"
DOC_NAMESPACE = "wattwise-system"
LINKED = ("charts", "crds", "examples", "Makefile", "mk", "hack", "pyproject.toml")
_BLOCK = re.compile(r"<!-- install: (?P<name>[\w-]+) -->\n```sh\n(?P<body>.*?)```", re.S)


def doc_blocks(text: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in _BLOCK.finditer(text)}


def test_the_doc_has_every_tested_block() -> None:
    assert set(doc_blocks(INSTALL_DOC.read_text())) == {
        "helm",
        "kubectl",
        "first-steps",
        "upgrade-helm",
        "uninstall-helm",
        "uninstall-kubectl",
    }


def test_readme_install_blocks_are_the_tested_ones() -> None:
    """README.md may repeat the install commands; marked the same way, they must be these, word for word."""
    readme = doc_blocks((REPO / "README.md").read_text())
    if not readme:
        pytest.skip("README.md has no `<!-- install: ... -->` blocks (docs/install.md holds the tested commands)")
    tested = doc_blocks(INSTALL_DOC.read_text())
    assert {name: body for name, body in readme.items() if tested.get(name) != body} == {}


class Shell:
    """Runs doc blocks as a user would, against the test control plane."""

    def __init__(self, plane: ControlPlane, helm: Helm, workdir: pathlib.Path, namespace: str) -> None:
        self.workdir = workdir
        self.namespace = namespace
        self.env = helm.env(plane.kubeconfig)
        self.env.update(
            PATH=os.pathsep.join([str(plane.bin_dir), str(helm.binary.parent), os.environ.get("PATH", "")]),
            KUBECACHEDIR=str(workdir / ".kube-cache"),
            KUBERC="off",
            CHART_NAMESPACE=namespace,
        )

    def run(self, block: str) -> str:
        script = block.replace(DOC_NAMESPACE, self.namespace)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"{script}\n--- exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        return result.stdout


@pytest.fixture
def workdir(tmp_path: pathlib.Path) -> pathlib.Path:
    for name in LINKED:
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


@pytest.fixture
def blocks() -> dict[str, str]:
    return doc_blocks(INSTALL_DOC.read_text())


@pytest.fixture
def cluster_wide_leftovers(kube_api: KubeApi, control_plane: ControlPlane) -> Iterator[None]:
    """Delete what the docs create outside the namespace (the example objects) unless they were there before."""
    install_crds(control_plane.api_client, REPO / "charts" / "wattwise" / "crds")
    objects = [("powerbudgets", "facility"), ("workloadclasses", "chat"), ("workloadclasses", "batch")]
    existing = {(plural, name) for plural, name in objects if _exists(kube_api, plural, name)}
    yield
    for plural, name in objects:
        if (plural, name) not in existing:
            with contextlib.suppress(ApiException):
                kube_api.custom.delete_cluster_custom_object("wattwise.dev", "v1alpha1", plural, name)


def _exists(kube_api: KubeApi, plural: str, name: str) -> bool:
    try:
        kube_api.custom.get_cluster_custom_object("wattwise.dev", "v1alpha1", plural, name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def _names(items: Sequence[Any]) -> set[str]:
    return {item.metadata.name for item in items}


def _drop_namespace(control_plane: ControlPlane, namespace: str) -> None:
    cleanup = cluster_objects.Cleanup(control_plane.api_client)
    cleanup.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    cleanup.run()


EXPECTED_DEPLOYMENTS = {"wattwise-operator", "wattwise-extender", "wattwise-scheduler"}


def test_helm_install_as_documented(
    control_plane: ControlPlane,
    kube_api: KubeApi,
    helm: Helm,
    workdir: pathlib.Path,
    blocks: dict[str, str],
    cluster_wide_leftovers: None,
) -> None:
    shell = Shell(control_plane, helm, workdir, "wattwise-docs-helm")
    try:
        out = shell.run(blocks["helm"])
        assert "STATUS: deployed" in out
        assert _names(kube_api.apps.list_namespaced_deployment(shell.namespace).items) == EXPECTED_DEPLOYMENTS
        assert _names(kube_api.apps.list_namespaced_daemon_set(shell.namespace).items) == {"wattwise-agent"}
        notes = out.split("NOTES:", 1)[1]
        assert "kubectl get powerbudgets" in notes
        _notes_budget_is_valid(control_plane, notes)

        listing = shell.run(blocks["first-steps"])
        assert re.search(r"^facility\s+400000\b.*\bMonitor\b", listing, re.M), listing

        upgraded = shell.run(blocks["upgrade-helm"])
        assert "has been upgraded" in upgraded and "REVISION: 2" in upgraded, upgraded

        shell.run(blocks["uninstall-helm"])
        assert kube_api.apps.list_namespaced_deployment(shell.namespace).items == []
        assert "wattwise-operator" not in _names(kube_api.rbac.list_cluster_role().items)
    finally:
        subprocess.run(
            [str(helm.binary), "uninstall", "wattwise", "-n", shell.namespace, "--ignore-not-found"],
            env=shell.env,
            capture_output=True,
            check=False,
        )
        _drop_namespace(control_plane, shell.namespace)


def _notes_budget_is_valid(control_plane: ControlPlane, notes: str) -> None:
    """The PowerBudget NOTES.txt tells the user to apply is accepted by the CRD's schema (server dry run)."""
    match = re.search(r"cat <<'YAML' \| kubectl apply -f -\n(?P<yaml>.*?)\n\s*YAML\n", notes, re.S)
    assert match, notes
    manifest = textwrap.dedent(match["yaml"])
    assert "mode: Monitor" in manifest
    control_plane.kubectl("apply", "--dry-run=server", "--server-side", "--validate=strict", "-f", "-", input=manifest)


def test_kubectl_install_as_documented(
    control_plane: ControlPlane,
    kube_api: KubeApi,
    helm: Helm,
    workdir: pathlib.Path,
    blocks: dict[str, str],
    cluster_wide_leftovers: None,
) -> None:
    shell = Shell(control_plane, helm, workdir, "wattwise-docs-kubectl")
    try:
        out = shell.run(blocks["kubectl"])
        assert "serverside-applied" in out
        assert _names(kube_api.apps.list_namespaced_deployment(shell.namespace).items) == EXPECTED_DEPLOYMENTS
        rendered = (workdir / "wattwise.yaml").read_text()
        assert f"namespace: {shell.namespace}" in rendered and DOC_NAMESPACE not in rendered
        shell.run(blocks["first-steps"])
        shell.run(blocks["uninstall-kubectl"])
        assert kube_api.apps.list_namespaced_deployment(shell.namespace).items == []
    finally:
        if (workdir / "wattwise.yaml").exists():
            control_plane.kubectl(
                "delete", "--ignore-not-found", "--wait=false", "-f", str(workdir / "wattwise.yaml"), check=False
            )
        _drop_namespace(control_plane, shell.namespace)
