"""Report authentication against the real API server's TokenReview, and pod annotations resolved with Events."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable

import httpx
import pytest

from tests.operator.conftest import AGENT_NAMESPACE, Domain, agent_pod_manifest, gpu_pod_manifest
from tests.operator.harness import OperatorThread, wait_until
from tests.support import cluster_objects
from tests.support.controlplane import ControlPlane, KubeApi
from wattwise.telemetry import wire

pytestmark = pytest.mark.cluster


def forged_report(node: str, uuid: str) -> bytes:
    now = dt.datetime.now(dt.UTC)
    return wire.NodeReport(
        node=node,
        agent=wire.AgentInfo(version="0", backend="sim", started_at=now),
        sequence=10**9,
        sent_at=now,
        sample_interval_seconds=1.0,
        state=wire.AgentState(mode=wire.AgentMode.CONNECTED, since=now),
        gpus=[wire.GpuReport(uuid=uuid, index=0, status=wire.GpuStatus.OK, sampled_at=now, power_watts=1.0)],
    ).to_json()


def test_forged_and_wrong_node_reports_are_rejected_and_change_nothing(
    operator: OperatorThread,
    control_plane: ControlPlane,
    kube_api: KubeApi,
    k8s_cleanup: cluster_objects.Cleanup,
    domain_factory: Callable[..., Domain],
) -> None:
    domain = domain_factory()
    node_a, node_b = domain.nodes
    wait_until(lambda: operator.call(lambda op: node_b in op.controller.replies), "node B answered once")
    domain.agents[node_b].stop()  # from here on, nothing legitimate touches node B's record
    record = operator.call(lambda op: op.state.reports[node_b])
    uuid = record.report.gpus[0].uuid
    body = forged_report(node_b, uuid)

    # Another ServiceAccount, even with the right audience and bound to a pod on node B.
    intruder_pod = f"intruder-{secrets.token_hex(3)}"
    manifest = agent_pod_manifest(intruder_pod, node_b)
    manifest["spec"]["serviceAccountName"] = "intruder"
    k8s_cleanup.add(kube_api.core.create_namespaced_pod(AGENT_NAMESPACE, manifest))
    intruder = control_plane.service_account_token(
        AGENT_NAMESPACE, "intruder", audiences=(wire.TOKEN_AUDIENCE,), bound_pod=intruder_pod
    )
    # The agent's own ServiceAccount, but minted for the API server's audience instead of the operator's.
    wrong_audience = control_plane.service_account_token(AGENT_NAMESPACE, "wattwise-agent", bound_pod=f"agent-{node_b}")
    # The agent's ServiceAccount, not bound to any pod.
    unbound = control_plane.service_account_token(AGENT_NAMESPACE, "wattwise-agent", audiences=(wire.TOKEN_AUDIENCE,))

    url = operator.url + wire.REPORT_PATH
    cases = [
        ({}, 401, "missing Authorization"),
        (wire.bearer("not-a-token"), 401, "rejected by TokenReview"),
        (wire.bearer(wrong_audience), 401, "rejected by TokenReview"),
        (wire.bearer(intruder), 403, "not the node agent's ServiceAccount"),
        (wire.bearer(unbound), 403, "not bound to a pod"),
        (wire.bearer(domain.tokens[node_a]), 403, f"runs on node '{node_a}', not '{node_b}'"),
    ]
    with httpx.Client(timeout=10) as http:
        for headers, status, reason in cases:
            answer = http.post(url, content=body, headers={"Content-Type": "application/json", **headers})
            assert (answer.status_code, reason in answer.json()["error"]) == (status, True), answer.text
        malformed = http.post(url, content=b'{"node": 7}', headers=wire.bearer(domain.tokens[node_b]))
        assert malformed.status_code == 422
        assert operator.call(lambda op: op.state.reports[node_b]) is record
        # The genuine token of node B is accepted: the checks above failed for their own reasons.
        genuine = http.post(url, content=body, headers=wire.bearer(domain.tokens[node_b]))
        assert genuine.status_code == 200, genuine.text
        counts = operator.call(
            lambda op: {
                o: op.registry.get_sample_value("wattwise_operator_reports_total", {"outcome": o}) or 0.0
                for o in ("unauthenticated", "forbidden", "malformed")
            }
        )
        assert counts["unauthenticated"] >= 3 and counts["forbidden"] >= 3 and counts["malformed"] >= 1


def test_pod_with_unknown_class_gets_default_tier_and_an_event(
    operator: OperatorThread,
    control_plane: ControlPlane,
    kube_api: KubeApi,
    k8s_cleanup: cluster_objects.Cleanup,
    domain_factory: Callable[..., Domain],
) -> None:
    domain = domain_factory(nodes=1, start_agents=False)
    pod = f"typo-{secrets.token_hex(3)}"
    annotations = {"wattwise.dev/workload-class": "does-not-exist"}
    k8s_cleanup.add(
        kube_api.core.create_namespaced_pod("default", gpu_pod_manifest(pod, domain.nodes[0], 1, annotations))
    )

    def reasons() -> list[str]:
        out = control_plane.kubectl(
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            f"involvedObject.name={pod}",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
            "--no-headers",
        ).stdout
        return out.splitlines()

    lines = wait_until(reasons, "an Event on the pod")
    assert lines[0].startswith("UnknownWorkloadClass")
    assert "'does-not-exist' does not exist; using the default tier standard" in lines[0]
    tier = operator.call(lambda op: op.state.pods[f"default/{pod}"])
    assert (tier.gpus, tier.workload_class, tier.tier) == (1, "does-not-exist", None)
