"""A real Kubernetes control plane on loopback for the tests: etcd, kube-apiserver, two kube-schedulers, kwok.

Pytest plugin (registered in tests/conftest.py) and a foreground runner (`make cluster`). Fixtures:

- `control_plane` (session): a running `ControlPlane`: `.kubeconfig` (admin), `.server`, `.admin_token`,
  `.ca_file`, `.api_client`, `.kubectl(*args)`, `.extender_url` (where the `wattwise-scheduler` profile
  expects the extender), `.service_account_token(ns, name)`.
- `wattwise_crds` (session): the CRDs in crds/ installed and Established.
- `kube_api` (function): typed API handles on the admin client.
- `k8s_cleanup` (function): register objects a test creates; they are deleted when it ends.
- `make_gpu_node` (function): create a kwok-managed GPU node, removed after the test.

What is not here: kube-controller-manager. Deployments make no pods, nothing is garbage-collected, and
namespaces need their finalizer cleared (`Cleanup` does it). kwok plays kubelet for pods bound to its nodes.
Without binaries and without Go the fixtures skip with one line; with WATTWISE_REQUIRE_CLUSTER=1 they fail.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from tests.support import cluster_bins, cluster_config, cluster_objects, cluster_process
from tests.support.cluster_config import Ports, StaticUser
from tests.support.cluster_pki import Pki, create_pki

CRD_DIR = cluster_bins.REPO / "crds"
START_TIMEOUT_SECONDS = 180.0
FIELD_MANAGER = "wattwise-tests"


@dataclasses.dataclass
class ControlPlane:
    """A running control plane and the ways in. Close it with `stop()` (or use `running_control_plane`)."""

    workdir: pathlib.Path
    bin_dir: pathlib.Path
    ports: Ports
    pki: Pki
    admin_token: str
    kubeconfig: pathlib.Path
    supervisor: cluster_process.Supervisor
    start_seconds: float = 0.0
    _api_client: ApiClient | None = None

    @property
    def server(self) -> str:
        return cluster_config.server_url(self.ports)

    @property
    def extender_url(self) -> str:
        """URL prefix the `wattwise-scheduler` profile calls (`<prefix>filter`, `<prefix>prioritize`)."""
        return cluster_config.extender_url(self.ports)

    @property
    def ca_file(self) -> pathlib.Path:
        return self.pki.ca_cert

    @property
    def api_client(self) -> ApiClient:
        """The admin's client, shared; make your own with `new_api_client()` to change its settings."""
        if self._api_client is None:
            self._api_client = self.new_api_client()
        return self._api_client

    def new_api_client(self, kubeconfig: pathlib.Path | None = None) -> ApiClient:
        api: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig)
        )
        return api

    def check(self) -> None:
        """Raise `ProcessDied` (with the log tail) if a component has exited since the start."""
        self.supervisor.check()

    def pids(self) -> list[int]:
        return [process.popen.pid for process in self.supervisor.processes]

    def logs(self) -> dict[str, pathlib.Path]:
        return {process.name: process.log for process in self.supervisor.processes}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, kubeconfig: pathlib.Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run our own kubectl (same version as the server) against this cluster; never the one on PATH."""
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERC")}
        env.update(KUBECACHEDIR=str(self.workdir / "kubectl-cache"), KUBERC="off")
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, env=env, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def service_account_token(self, namespace: str, name: str, **kwargs: Any) -> str:
        """See `cluster_objects.service_account_token` (audiences, expiration_seconds, bound_pod)."""
        return cluster_objects.service_account_token(client.CoreV1Api(self.api_client), namespace, name, **kwargs)

    def kubeconfig_for_token(self, token: str, user: str) -> pathlib.Path:
        """A kubeconfig that authenticates with `token`, e.g. to act as a ServiceAccount under RBAC."""
        path = self.workdir / "kubeconfigs" / f"{user.replace(':', '-')}-{secrets.token_hex(4)}.kubeconfig"
        _write_kubeconfig(path, self.server, self.ca_file, user, token)
        return path

    def stop(self) -> None:
        if self._api_client is not None:
            self._api_client.close()  # type: ignore[no-untyped-call]
            self._api_client = None
        self.supervisor.stop()
        # etcd preallocates 64 MB of WAL; pytest keeps the last few temp dirs, so drop the data, keep the logs.
        shutil.rmtree(self.workdir / "etcd", ignore_errors=True)


def _write_kubeconfig(path: pathlib.Path, server: str, ca: pathlib.Path, user: str, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cluster_config.kubeconfig(server, ca, user, token), sort_keys=False))
    path.chmod(0o600)


def _write_yaml(path: pathlib.Path, data: Any) -> pathlib.Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _child_env() -> dict[str, str]:
    """The components must not pick up a developer's KUBECONFIG or kwok config."""
    return {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERC")}


def wattwise_scheduler_config(kubeconfig_path: pathlib.Path, url_prefix: str) -> dict[str, Any]:
    """The `wattwise-scheduler` profile alone, with the extender stanza the extender ships (`schedconfig`).

    Rendered by `wattwise.scheduler_extender.schedconfig` when that module is present, so the tests run the
    very stanza users get; otherwise by `cluster_config`. The default profile runs in its own kube-scheduler
    process, so default-scheduler pods never wait on an extender a test has not started.
    """
    try:
        from wattwise.scheduler_extender import schedconfig
    except ImportError:
        return cluster_config.scheduler_config(kubeconfig_path, cluster_config.WATTWISE_SCHEDULER, url_prefix)
    config = schedconfig.render_scheduler_config(url_prefix)
    config["clientConnection"] = {"kubeconfig": str(kubeconfig_path)}
    config["leaderElection"] = {"leaderElect": False}
    return config


def start_control_plane(
    workdir: pathlib.Path, bin_dir: pathlib.Path, *, timeout: float = START_TIMEOUT_SECONDS
) -> ControlPlane:
    """Start every component and wait until each is ready. On failure nothing is left running."""
    began = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    ports = Ports.from_list(cluster_process.reserve_ports(Ports.count()))
    pki = create_pki(workdir / "pki")
    users = {
        "admin": StaticUser(secrets.token_urlsafe(32), "wattwise-admin", "uid-admin", ("system:masters",)),
        "scheduler": StaticUser(secrets.token_urlsafe(32), "system:kube-scheduler", "uid-kube-scheduler"),
        # kwok stands in for every kubelet (node status, leases, pod status and deletion): give it all rights.
        "kwok": StaticUser(secrets.token_urlsafe(32), "kwok-controller", "uid-kwok", ("system:masters",)),
    }
    token_file = workdir / "tokens.csv"
    token_file.write_text(cluster_config.token_auth_file(list(users.values())))
    token_file.chmod(0o600)
    server = cluster_config.server_url(ports)
    kubeconfigs = {}
    for role, user in users.items():
        kubeconfigs[role] = workdir / f"{role}.kubeconfig"
        _write_kubeconfig(kubeconfigs[role], server, pki.ca_cert, user.name, user.token)

    supervisor = cluster_process.Supervisor(workdir / "logs")
    plane = ControlPlane(
        workdir=workdir,
        bin_dir=bin_dir,
        ports=ports,
        pki=pki,
        admin_token=users["admin"].token,
        kubeconfig=kubeconfigs["admin"],
        supervisor=supervisor,
    )
    env = _child_env()
    try:
        supervisor.start("etcd", cluster_config.etcd_args(bin_dir / "etcd", workdir / "etcd", ports), env)
        etcd_health = f"http://{cluster_config.LOOPBACK}:{ports.etcd_client}/health"
        cluster_process.wait_until(lambda: cluster_process.http_ready(etcd_health), "etcd", supervisor, timeout)
        apiserver = cluster_config.apiserver_args(
            bin_dir / "kube-apiserver",
            ports,
            serving_cert=pki.serving_cert,
            serving_key=pki.serving_key,
            service_account_key=pki.service_account_key,
            service_account_public_key=pki.service_account_public_key,
            token_file=token_file,
            cert_dir=workdir / "apiserver-certs",
        )
        supervisor.start("kube-apiserver", apiserver, env)
        readyz = f"{server}/readyz"
        token = users["admin"].token
        cluster_process.wait_until(
            lambda: cluster_process.http_ready(readyz, ca_file=pki.ca_cert, token=token),
            "kube-apiserver /readyz",
            supervisor,
            timeout,
        )
        _start_schedulers_and_kwok(plane, kubeconfigs, env)
        loopback = cluster_config.LOOPBACK
        checks: list[tuple[str, str, pathlib.Path | None]] = [
            ("kube-scheduler", f"https://{loopback}:{ports.scheduler}/readyz", pki.ca_cert),
            ("wattwise-scheduler", f"https://{loopback}:{ports.wattwise_scheduler}/readyz", pki.ca_cert),
            ("kwok", f"http://{loopback}:{ports.kwok}/readyz", None),
        ]
        for name, url, ca in checks:
            cluster_process.wait_until(_ready_check(url, ca), name, supervisor, timeout)
    except BaseException:
        plane.stop()
        raise
    plane.start_seconds = time.monotonic() - began
    return plane


def _ready_check(url: str, ca: pathlib.Path | None) -> Callable[[], bool]:
    return lambda: cluster_process.http_ready(url, ca_file=ca)


def _start_schedulers_and_kwok(plane: ControlPlane, kubeconfigs: dict[str, pathlib.Path], env: dict[str, str]) -> None:
    workdir, bin_dir, ports, pki = plane.workdir, plane.bin_dir, plane.ports, plane.pki
    default_config = _write_yaml(
        workdir / "kube-scheduler.yaml", cluster_config.scheduler_config(kubeconfigs["scheduler"], "default-scheduler")
    )
    wattwise_config = _write_yaml(
        workdir / "wattwise-scheduler.yaml", wattwise_scheduler_config(kubeconfigs["scheduler"], plane.extender_url)
    )
    tls = {"serving_cert": pki.serving_cert, "serving_key": pki.serving_key}
    for name, config_path, port in (
        ("kube-scheduler", default_config, ports.scheduler),
        ("wattwise-scheduler", wattwise_config, ports.wattwise_scheduler),
    ):
        argv = cluster_config.scheduler_args(
            bin_dir / "kube-scheduler", config_path, kubeconfigs["scheduler"], port, **tls
        )
        plane.supervisor.start(name, argv, env)
    kwok = cluster_config.kwok_args(bin_dir / "kwok", kubeconfigs["kwok"], cluster_bins.KWOK_STAGES, ports.kwok)
    plane.supervisor.start("kwok", kwok, env)


@contextlib.contextmanager
def running_control_plane(workdir: pathlib.Path, bin_dir: pathlib.Path | None = None) -> Iterator[ControlPlane]:
    plane = start_control_plane(workdir, bin_dir or cluster_bins.ensure_binaries())
    try:
        yield plane
    finally:
        plane.stop()


# --- CRDs ------------------------------------------------------------------------------------------------


def install_crds(api: ApiClient, directory: pathlib.Path = CRD_DIR, timeout: float = 30.0) -> list[str]:
    """Server-side apply every CRD in `directory` and wait until each is Established; their names."""
    extensions = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(directory.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        cluster_objects.rest_call(
            api,
            "PATCH",
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
            query=[("fieldManager", FIELD_MANAGER), ("force", "true"), ("fieldValidation", "Strict")],
            body=crd,
            content_type="application/apply-patch+yaml",
        )
        names.append(name)
    for name in names:
        cluster_objects.wait_for(
            lambda name=name: _established(extensions, name), f"CRD {name} not Established", timeout
        )
    return names


def _established(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    status = extensions.read_custom_resource_definition(name).status
    conditions = (status.conditions if status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


# --- pytest fixtures -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KubeApi:
    """Typed API handles on the admin client."""

    api_client: ApiClient
    core: client.CoreV1Api
    apps: client.AppsV1Api
    custom: client.CustomObjectsApi
    apiextensions: client.ApiextensionsV1Api
    rbac: client.RbacAuthorizationV1Api
    authentication: client.AuthenticationV1Api
    authorization: client.AuthorizationV1Api
    coordination: client.CoordinationV1Api

    @classmethod
    def for_client(cls, api: ApiClient) -> KubeApi:
        return cls(
            api_client=api,
            core=client.CoreV1Api(api),
            apps=client.AppsV1Api(api),
            custom=client.CustomObjectsApi(api),
            apiextensions=client.ApiextensionsV1Api(api),
            rbac=client.RbacAuthorizationV1Api(api),
            authentication=client.AuthenticationV1Api(api),
            authorization=client.AuthorizationV1Api(api),
            coordination=client.CoordinationV1Api(api),
        )


def _binaries_or_skip(request: pytest.FixtureRequest) -> pathlib.Path:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    # A cold build takes many minutes: let its progress through instead of looking hung.
    quiet = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
    try:
        with quiet:
            return cluster_bins.ensure_binaries()
    except (cluster_bins.ControlPlaneUnavailable, subprocess.CalledProcessError) as error:
        reason = str(error).splitlines()[0]
        if cluster_bins.required():
            pytest.fail(f"{reason} ({cluster_bins.REQUIRE_ENV} is set)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster_bin_dir(request: pytest.FixtureRequest) -> pathlib.Path:
    """The folder with etcd, kube-apiserver, kube-scheduler, kubectl and kwok (built on first use)."""
    return _binaries_or_skip(request)


@pytest.fixture(scope="session")
def control_plane(cluster_bin_dir: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_control_plane(tmp_path_factory.mktemp("control-plane"), cluster_bin_dir) as plane:
        yield plane


@pytest.fixture(scope="session")
def wattwise_crds(control_plane: ControlPlane) -> list[str]:
    return install_crds(control_plane.api_client)


@pytest.fixture
def kube_api(control_plane: ControlPlane) -> KubeApi:
    control_plane.check()  # a crashed component should fail the test with its log, not a connection error
    return KubeApi.for_client(control_plane.api_client)


@pytest.fixture
def k8s_cleanup(control_plane: ControlPlane) -> Iterator[cluster_objects.Cleanup]:
    control_plane.check()
    cleanup = cluster_objects.Cleanup(control_plane.api_client)
    yield cleanup
    cleanup.run()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failing test that used the control plane, say where its component logs are."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    plane = getattr(item, "funcargs", {}).get("control_plane")
    if report.failed and isinstance(plane, ControlPlane):
        lines = [f"{name}: {path}" for name, path in plane.logs().items()]
        report.sections.append(("control plane logs", "\n".join([f"kubeconfig: {plane.kubeconfig}", *lines])))


MakeGpuNode = Callable[..., str]


@pytest.fixture
def make_gpu_node(kube_api: KubeApi, k8s_cleanup: cluster_objects.Cleanup) -> MakeGpuNode:
    """`make_gpu_node(name, gpus=8, product=..., rack=None, zone=None, labels=None, kwok_taint=False,
    wait_ready=True)` creates a kwok GPU node, waits until kwok reports it Ready, and returns its name."""

    def make(name: str, *args: Any, wait_ready: bool = True, **kwargs: Any) -> str:
        manifest = cluster_objects.gpu_node_manifest(name, *args, **kwargs)
        k8s_cleanup.add(cluster_objects.rest_call(kube_api.api_client, "POST", "/api/v1/nodes", body=manifest))
        if wait_ready:
            cluster_objects.wait_for(
                lambda: cluster_objects.node_ready(kube_api.core, name), f"node {name} not Ready", 30
            )
        return name

    return make


# --- foreground runner (`make cluster`) ------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.controlplane", description="Run the Wattwise test control plane until Ctrl-C."
    )
    parser.add_argument("--workdir", type=pathlib.Path, help="keep state and logs here (default: a temp dir)")
    parser.add_argument("--no-crds", action="store_true", help="do not install the Wattwise CRDs")
    parser.add_argument("--once", action="store_true", help="start, print the banner, stop (to time a start)")
    args = parser.parse_args(argv)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or pathlib.Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="wattwise-cluster-"))
        )
        try:
            plane = stack.enter_context(running_control_plane(workdir))
            if not args.no_crds:
                install_crds(plane.api_client)
            print(_banner(plane), flush=True)
            while not args.once:
                plane.supervisor.check()
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping the control plane", file=sys.stderr)
        except (cluster_process.ProcessDied, TimeoutError, ApiException, cluster_bins.ControlPlaneUnavailable) as error:
            print(f"control plane failed: {error}", file=sys.stderr)
            return 1
    return 0


def _banner(plane: ControlPlane) -> str:
    logs = "\n".join(f"  {name:<19} {path}" for name, path in plane.logs().items())
    return (
        f"control plane ready in {plane.start_seconds:.1f} s: {plane.server}\n"
        f"kubeconfig: {plane.kubeconfig}\n"
        f"  export KUBECONFIG={plane.kubeconfig}\n"
        f"  alias kubectl={plane.bin_dir / 'kubectl'}   # same version as the server\n"
        f"scheduler extender expected at {plane.extender_url} (schedulerName: {cluster_config.WATTWISE_SCHEDULER})\n"
        f"logs:\n{logs}\n"
        "Ctrl-C stops everything."
    )


if __name__ == "__main__":
    sys.exit(main())
