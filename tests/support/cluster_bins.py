"""Find (and on first use build) the control-plane binaries: etcd, kube-apiserver, kube-scheduler, kubectl, kwok.

The build itself lives in `hack/cluster-bins.sh` (driven by `make cluster-bins`) so a person, CI and the test
fixture share one cached build in a folder outside the checkout. This module only asks the script where that
folder is and runs the make target when something is missing.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "cluster-bins.sh"
KWOK_STAGES = REPO / "hack" / "kwok" / "stages.yaml"
BINARIES = ("etcd", "kube-apiserver", "kube-scheduler", "kubectl", "kwok")
# CI sets this so a control plane that cannot start fails the run instead of being skipped.
REQUIRE_ENV = "WATTWISE_REQUIRE_CLUSTER"


class ControlPlaneUnavailable(RuntimeError):
    """The binaries are missing and cannot be built here; the message is one line for a skip reason."""


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0", "false", "no")


def bin_dir() -> pathlib.Path:
    """The cache folder the build script uses for the current sources (nothing is built)."""
    out = subprocess.run([str(BUILD_SCRIPT), "dir"], check=True, capture_output=True, text=True).stdout
    return pathlib.Path(out.strip())


def missing(directory: pathlib.Path) -> list[str]:
    return [name for name in BINARIES if not os.access(directory / name, os.X_OK)]


def ensure_binaries() -> pathlib.Path:
    """Return the folder holding every binary, building it with `make cluster-bins` when incomplete.

    The build's own progress goes to the caller's stderr (a cold build takes many minutes; silence would look
    like a hang).
    """
    directory = bin_dir()
    if not missing(directory):
        return directory
    if shutil.which("go") is None:
        raise ControlPlaneUnavailable(
            f"control plane needs Go to build kube-apiserver/etcd/kwok (no `go` on PATH, nothing in {directory})"
        )
    if shutil.which("make") is None:
        raise ControlPlaneUnavailable("control plane build needs `make` (not on PATH)")
    subprocess.run(["make", "-s", "--no-print-directory", "cluster-bins"], cwd=REPO, check=True)
    absent = missing(directory)
    if absent:
        raise ControlPlaneUnavailable(f"`make cluster-bins` finished but {', '.join(absent)} missing in {directory}")
    return directory
