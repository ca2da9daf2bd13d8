"""The real Helm CLI (built from its Go module by `make helm-bin`) and the chart rendered with it.

`helm_binary()` builds Helm on first use (minutes on a cold Go cache, then cached outside the checkout) and
raises `HelmUnavailable` with a one-line reason when it cannot (no Go). Rendering always passes an explicit
`--kube-version`, so the output does not depend on the Kubernetes version Helm was stamped with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "wattwise"
#: The version of the test control plane (hack/cluster-bins.sh builds v1.37.2).
KUBE_VERSION = "v1.37.2"
DEFAULT_RELEASE = "wattwise"
DEFAULT_NAMESPACE = "wattwise-system"

Manifest = dict[str, Any]


class HelmUnavailable(RuntimeError):
    """Helm is missing and cannot be built here; the message is one line for a skip reason."""


class HelmFailed(RuntimeError):
    """helm exited non-zero; `stderr` holds its message (e.g. a `fail` rule or a schema error)."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"helm {' '.join(argv[1:3])} exited {returncode}: {stderr.strip()}")
        self.stderr = stderr


def helm_binary() -> pathlib.Path:
    """Path of the Helm CLI, built with `make -s helm-bin` when missing."""
    path = pathlib.Path(_make("helm-path"))
    if os.access(path, os.X_OK):
        return path
    if shutil.which("go") is None:
        raise HelmUnavailable(f"the chart tests need Helm, built from its Go module (no `go` on PATH, no {path})")
    built = pathlib.Path(_make("helm-bin"))
    if not os.access(built, os.X_OK):
        raise HelmUnavailable(f"`make helm-bin` finished but {built} is not executable")
    return built


def _make(target: str) -> str:
    if shutil.which("make") is None:
        raise HelmUnavailable("the chart tests need `make` to find or build Helm")
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", target], cwd=REPO, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise HelmUnavailable(f"make {target} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return result.stdout.strip().splitlines()[-1]


@dataclasses.dataclass(frozen=True)
class Helm:
    """Runs one Helm binary with its state (cache, config, repositories) in a folder of its own."""

    binary: pathlib.Path
    home: pathlib.Path

    def env(self, kubeconfig: pathlib.Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_") and k not in ("KUBECONFIG", "KUBERC")}
        env.update(
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_DATA_HOME=str(self.home / "data"),
        )
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        return env

    def run(self, *args: str, kubeconfig: pathlib.Path | None = None, timeout: float = 120) -> str:
        argv = [str(self.binary), *args]
        result = subprocess.run(
            argv, capture_output=True, text=True, env=self.env(kubeconfig), cwd=REPO, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise HelmFailed(argv, result.returncode, result.stderr)
        return result.stdout

    def template(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = DEFAULT_RELEASE,
        namespace: str = DEFAULT_NAMESPACE,
        kube_version: str = KUBE_VERSION,
        extra: Sequence[str] = (),
    ) -> list[Manifest]:
        """`helm template` of charts/wattwise with `values` (a values file's content); the parsed documents."""
        args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", kube_version, *extra]
        if values:
            text = yaml.safe_dump(dict(values), sort_keys=False)
            values_file = self.home / f"values-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
            values_file.write_text(text)
            args += ["--values", str(values_file)]
        return parse_documents(self.run(*args))


def parse_documents(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: Sequence[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The one document of `kind` (and `name`); fails loudly when there is none or more than one."""
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(matches) != 1:
        found = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
        raise LookupError(f"expected one {kind} {name or ''}, found {len(matches)} among {found}")
    return matches[0]


def kinds(docs: Sequence[Manifest]) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"]) for d in docs}
