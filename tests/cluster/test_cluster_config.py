"""The control plane's configuration as data: no binaries needed, so these run everywhere."""

from __future__ import annotations

import pathlib

import pytest

from tests.support import cluster_bins, cluster_config, cluster_objects, cluster_process
from tests.support.cluster_config import Ports, StaticUser

PORTS = Ports.from_list(range(20001, 20001 + Ports.count()))


def test_wattwise_scheduler_profile_calls_the_extender_with_the_agreed_stanza() -> None:
    config = cluster_config.scheduler_config(pathlib.Path("/k"), "wattwise-scheduler", "http://127.0.0.1:20007/")
    assert config["profiles"] == [{"schedulerName": "wattwise-scheduler"}]
    assert config["leaderElection"] == {"leaderElect": False}
    assert config["extenders"] == [{
        "urlPrefix": "http://127.0.0.1:20007", "filterVerb": "filter", "prioritizeVerb": "prioritize",
        "weight": 5, "nodeCacheCapable": True, "enableHTTPS": False, "httpTimeout": "5s", "ignorable": False,
        "managedResources": [{"name": "nvidia.com/gpu", "ignoredByScheduler": False}],
    }]  # fmt: skip


def test_default_scheduler_has_no_extender() -> None:
    assert "extenders" not in cluster_config.scheduler_config(pathlib.Path("/k"), "default-scheduler")


def test_extender_url_uses_the_reserved_port() -> None:
    assert cluster_config.extender_url(PORTS) == f"http://127.0.0.1:{PORTS.extender}/"


def test_token_file_quotes_groups() -> None:
    text = cluster_config.token_auth_file(
        [StaticUser("t1", "admin", "u1", ("system:masters", "extra")), StaticUser("t2", "sched", "u2")]
    )
    assert text == 't1,admin,u1,"system:masters,extra"\nt2,sched,u2\n'


def test_apiserver_turns_off_admission_that_needs_controllers_and_keeps_rbac() -> None:
    path = pathlib.Path("/x")
    argv = cluster_config.apiserver_args(
        path,
        PORTS,
        serving_cert=path,
        serving_key=path,
        service_account_key=path,
        service_account_public_key=path,
        token_file=path,
        cert_dir=path,
    )
    assert "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition" in argv
    assert "--authorization-mode=Node,RBAC" in argv
    assert f"--secure-port={PORTS.apiserver}" in argv
    assert all("0.0.0.0" not in arg for arg in argv)


def test_every_component_binds_loopback_only() -> None:
    path = pathlib.Path("/x")
    argvs = [
        cluster_config.etcd_args(path, path, PORTS),
        cluster_config.scheduler_args(path, path, path, PORTS.scheduler, serving_cert=path, serving_key=path),
        cluster_config.kwok_args(path, path, path, PORTS.kwok),
    ]
    for argv in argvs:
        addresses = [a for a in argv if "url" in a or "address" in a]
        assert addresses and all("127.0.0.1" in a for a in addresses), argv


def test_gpu_node_is_managed_by_kwok_and_advertises_gpus() -> None:
    node = cluster_objects.gpu_node_manifest("n1", 4, "NVIDIA-A100", rack="r1", zone="z1", labels={"extra": "1"})
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    labels = node["metadata"]["labels"]
    assert (labels["nvidia.com/gpu.product"], labels["topology.wattwise.dev/rack"]) == ("NVIDIA-A100", "r1")
    assert (labels["topology.kubernetes.io/zone"], labels["extra"]) == ("z1", "1")
    assert node["spec"]["taints"] == []
    assert cluster_objects.gpu_node_manifest("n2", kwok_taint=True)["spec"]["taints"] == [cluster_objects.KWOK_TAINT]


def test_reserved_ports_are_distinct_and_free() -> None:
    ports = cluster_process.reserve_ports(Ports.count())
    assert len(set(ports)) == len(ports)
    assert not set(ports) & set(cluster_process.listening_ports().values())


@pytest.mark.parametrize(("value", "required"), [("", False), ("0", False), ("1", True), ("true", True)])
def test_require_switch(monkeypatch: pytest.MonkeyPatch, value: str, required: bool) -> None:
    monkeypatch.setenv(cluster_bins.REQUIRE_ENV, value)
    assert cluster_bins.required() is required
