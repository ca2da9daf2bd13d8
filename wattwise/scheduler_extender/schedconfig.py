"""The KubeSchedulerConfiguration that wires kube-scheduler to the extender (`render`), and why it says what it says.

Extenders are a top-level list shared by every profile in one kube-scheduler process, so opting in is done twice:
pods name the `wattwise-scheduler` profile, and the extender passes every other profile's pods straight through
(`ExtenderSettings.scheduler_names`). That keeps `default-scheduler` unchanged when both profiles share a process
(the test control plane); the chart's secondary scheduler ships the `wattwise-scheduler` profile alone, with its own
leader-election lease, so it never competes with the cluster's scheduler.

Choices:
- `weight: 10`. kube-scheduler adds `score x weight x 10` (MaxNodeScore 100 / MaxExtenderPriority 10) to the sum of
  its plugins' weighted scores. The default scoring plugins span at most 1,200 points, but the ones that differ
  between otherwise equal GPU nodes are NodeResourcesFit, NodeResourcesBalancedAllocation and ImageLocality,
  100 each. With weight 10, one extender point is worth 100, a whole resource plugin, and the extender's range
  (1,000) outweighs all three together: headroom decides. User intent still counts: preferred affinity, taints
  and topology spread (weights 2-3, up to 300 points each) can tip a choice between nodes one or two power points
  apart, which is what "soft preference" should mean.
- `nodeCacheCapable: true`: the scheduler sends node names, not 5,000 serialised Node objects; power state comes
  from the operator anyway.
- `managedResources: nvidia.com/gpu` (`ignoredByScheduler: false`): the extender is only called for pods that
  request GPUs, and the scheduler still counts GPUs itself.
- `ignorable: false`: a pod that asked for power-aware placement waits while the extender is unreachable rather
  than being placed blind (an overcommitted critical budget is the failure this project exists to prevent).
  The extender itself never blocks: with stale power data it passes every node (see `placement`).
- `httpTimeout: 5s`: answers take milliseconds; the timeout only bounds how long a hung extender stalls the
  scheduling queue (scheduling cycles are serial).
"""

from __future__ import annotations

from typing import Any

from wattwise.scheduler_extender.settings import SCHEDULER_NAME

API_VERSION = "kubescheduler.config.k8s.io/v1"
WEIGHT = 10
HTTP_TIMEOUT = "5s"
GPU_RESOURCE = "nvidia.com/gpu"


def extender_stanza(url_prefix: str, *, ignorable: bool = False) -> dict[str, Any]:
    """One entry of `extenders`; kube-scheduler POSTs to `<urlPrefix>/<verb>`."""
    return {
        "urlPrefix": url_prefix.rstrip("/"),
        "filterVerb": "filter",
        "prioritizeVerb": "prioritize",
        "weight": WEIGHT,
        "nodeCacheCapable": True,
        "enableHTTPS": url_prefix.startswith("https://"),
        "httpTimeout": HTTP_TIMEOUT,
        "ignorable": ignorable,
        "managedResources": [{"name": GPU_RESOURCE, "ignoredByScheduler": False}],
    }


def render(
    url_prefix: str,
    *,
    include_default_profile: bool = True,
    leader_election_namespace: str | None = None,
    ignorable: bool = False,
) -> dict[str, Any]:
    """A KubeSchedulerConfiguration with the `wattwise-scheduler` profile calling the extender at `url_prefix`.

    `include_default_profile` adds an untouched `default-scheduler` profile (one kube-scheduler for everything,
    as in tests). `leader_election_namespace` turns on leader election on a lease named `wattwise-scheduler`
    there (a secondary scheduler must not contend for the default `kube-scheduler` lease); None disables it.
    """
    profiles: list[dict[str, Any]] = []
    if include_default_profile:
        profiles.append({"schedulerName": "default-scheduler"})
    profiles.append({"schedulerName": SCHEDULER_NAME})
    leader: dict[str, Any] = {"leaderElect": False}
    if leader_election_namespace:
        leader = {
            "leaderElect": True,
            "resourceName": SCHEDULER_NAME,
            "resourceNamespace": leader_election_namespace,
        }
    return {
        "apiVersion": API_VERSION,
        "kind": "KubeSchedulerConfiguration",
        "leaderElection": leader,
        "profiles": profiles,
        "extenders": [extender_stanza(url_prefix, ignorable=ignorable)],
    }


def render_scheduler_config(url_prefix: str) -> dict[str, Any]:
    """The `wattwise-scheduler` profile alone, for a kube-scheduler process of its own (secondary scheduler).

    The test control plane runs it beside a separate default scheduler and sets `clientConnection` and
    `leaderElection` itself.
    """
    return render(url_prefix, include_default_profile=False)


#: What deploy/scheduler/kube-scheduler-config.yaml holds: the chart's secondary scheduler, next to the
#: extender Service in the release namespace (the chart templates the namespace into both values).
SHIPPED_URL_PREFIX = "http://wattwise-extender.wattwise-system.svc:8888"
SHIPPED_NAMESPACE = "wattwise-system"


def shipped() -> dict[str, Any]:
    return render(SHIPPED_URL_PREFIX, include_default_profile=False, leader_election_namespace=SHIPPED_NAMESPACE)


def shipped_yaml() -> str:
    import yaml

    header = (
        "# Generated by `python -m wattwise.scheduler_extender.schedconfig` from\n"
        "# wattwise/scheduler_extender/schedconfig.py (see its docstring for the choices). Do not edit by hand.\n"
    )
    return header + yaml.safe_dump(shipped(), sort_keys=False)


if __name__ == "__main__":  # pragma: no cover - `make extender-config`
    print(shipped_yaml(), end="")
