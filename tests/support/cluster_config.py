"""Command lines and configuration files of the test control plane, as pure functions of paths and ports.

Kept apart from process handling so the choices (which admission plugins are off and why, what the
scheduler's extender stanza says) are readable in one place and checked by plain unit tests.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

LOOPBACK = "127.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
WATTWISE_SCHEDULER = "wattwise-scheduler"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"

# Admission plugins that are on by default but only make sense with kube-controller-manager running, which
# this control plane does not run:
# - ServiceAccount: rejects every pod until the token controller has made the namespace's `default`
#   ServiceAccount (and would mount token volumes no kubelet ever reads);
# - TaintNodesByCondition: taints each new node `not-ready` and relies on the node-lifecycle controller to
#   lift it once kwok reports Ready, so nothing could ever schedule.
DISABLED_ADMISSION_PLUGINS = ("ServiceAccount", "TaintNodesByCondition")


@dataclasses.dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    scheduler: int
    wattwise_scheduler: int
    kwok: int
    extender: int  # reserved for the scheduler extender a test serves; nothing here listens on it

    @classmethod
    def from_list(cls, ports: Sequence[int]) -> Ports:
        return cls(*ports)

    @classmethod
    def count(cls) -> int:
        return len(dataclasses.fields(cls))


@dataclasses.dataclass(frozen=True)
class StaticUser:
    """A `--token-auth-file` line: bearer token, user name, uid, groups."""

    token: str
    name: str
    uid: str
    groups: tuple[str, ...] = ()


def token_auth_file(users: Sequence[StaticUser]) -> str:
    lines = []
    for user in users:
        fields = [user.token, user.name, user.uid]
        if user.groups:
            fields.append('"' + ",".join(user.groups) + '"')
        lines.append(",".join(fields))
    return "\n".join(lines) + "\n"


def server_url(ports: Ports) -> str:
    return f"https://{LOOPBACK}:{ports.apiserver}"


def extender_url(ports: Ports) -> str:
    return f"http://{LOOPBACK}:{ports.extender}/"


def kubeconfig(server: str, ca_cert: pathlib.Path, user: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "wattwise-test", "cluster": {"server": server, "certificate-authority": str(ca_cert)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "wattwise-test", "context": {"cluster": "wattwise-test", "user": user}}],
        "current-context": "wattwise-test",
    }


def etcd_args(binary: pathlib.Path, data_dir: pathlib.Path, ports: Ports) -> list[str]:
    client = f"http://{LOOPBACK}:{ports.etcd_client}"
    peer = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=wattwise-test",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=wattwise-test={peer}",
        "--log-level=warn",
        # Test data is thrown away with the folder: durability buys nothing and fsync costs seconds.
        "--unsafe-no-fsync",
    ]


def apiserver_args(
    binary: pathlib.Path,
    ports: Ports,
    *,
    serving_cert: pathlib.Path,
    serving_key: pathlib.Path,
    service_account_key: pathlib.Path,
    service_account_public_key: pathlib.Path,
    token_file: pathlib.Path,
    cert_dir: pathlib.Path,
) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers=http://{LOOPBACK}:{ports.etcd_client}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={serving_cert}",
        f"--tls-private-key-file={serving_key}",
        f"--cert-dir={cert_dir}",
        f"--token-auth-file={token_file}",
        "--authorization-mode=Node,RBAC",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={service_account_public_key}",
        f"--service-account-signing-key-file={service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--disable-admission-plugins={','.join(DISABLED_ADMISSION_PLUGINS)}",
        # A loopback address is not a valid Endpoints address: with the default reconciler the API server
        # would log an error for the `kubernetes` Service every few seconds.
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def scheduler_config(
    kubeconfig_path: pathlib.Path, scheduler_name: str, extender_url_prefix: str | None = None
) -> dict[str, Any]:
    """KubeSchedulerConfiguration for one profile, with the Wattwise extender when a URL is given.

    Extenders are global to a kube-scheduler process (not per profile), so the default scheduler and the
    Wattwise scheduler run as two processes, as they would in a cluster with a secondary scheduler.
    """
    config: dict[str, Any] = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig_path)},
        "leaderElection": {"leaderElect": False},
        "profiles": [{"schedulerName": scheduler_name}],
    }
    if extender_url_prefix is not None:
        config["extenders"] = [wattwise_extender(extender_url_prefix)]
    return config


def wattwise_extender(url_prefix: str) -> dict[str, Any]:
    return {
        "urlPrefix": url_prefix.rstrip("/"),  # kube-scheduler adds "/<verb>"
        "filterVerb": "filter",
        "prioritizeVerb": "prioritize",
        "weight": 5,
        "nodeCacheCapable": True,
        "enableHTTPS": False,
        "httpTimeout": "5s",
        "ignorable": False,
        "managedResources": [{"name": "nvidia.com/gpu", "ignoredByScheduler": False}],
    }


def scheduler_args(
    binary: pathlib.Path,
    config_path: pathlib.Path,
    kubeconfig_path: pathlib.Path,
    port: int,
    *,
    serving_cert: pathlib.Path,
    serving_key: pathlib.Path,
) -> list[str]:
    return [
        str(binary),
        f"--config={config_path}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--tls-cert-file={serving_cert}",
        f"--tls-private-key-file={serving_key}",
        f"--authentication-kubeconfig={kubeconfig_path}",
        f"--authorization-kubeconfig={kubeconfig_path}",
        "--v=2",  # one line per scheduling attempt: what an extender test needs when a pod stays Pending
    ]


def kwok_args(binary: pathlib.Path, kubeconfig_path: pathlib.Path, stages: pathlib.Path, port: int) -> list[str]:
    return [
        str(binary),
        f"--config={stages}",
        f"--kubeconfig={kubeconfig_path}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={KWOK_NODE_ANNOTATION_VALUE}",
        f"--cidr={POD_CIDR}",
        "--node-ip=10.0.0.1",
        "--node-lease-duration-seconds=40",
        f"--server-address={LOOPBACK}:{port}",
    ]
