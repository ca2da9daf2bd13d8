"""A pod's GPUs, tier and expected power."""

from __future__ import annotations

from typing import Any

import pytest

from tests.scheduler_extender.builders import pod
from wattwise.crd.common import LatencyTier
from wattwise.live_state import ClassView
from wattwise.scheduler_extender.pod_power import nameplate_for_product, pod_demand, requested_gpus
from wattwise.scheduler_extender.protocol import BadRequest, Pod, parse_extender_args

STANDARD = LatencyTier.STANDARD


@pytest.mark.parametrize(
    ("product", "watts"),
    [
        ("NVIDIA-H100-80GB-HBM3", 700.0),
        ("NVIDIA-H100-PCIe", 350.0),
        ("NVIDIA-H100-NVL", 400.0),
        ("NVIDIA-A100-SXM4-80GB", 400.0),
        ("NVIDIA-A100-PCIE-40GB", 300.0),
        ("NVIDIA-L40S", 350.0),
        ("NVIDIA-L4", 72.0),
        ("Tesla-T4", 70.0),
        ("NVIDIA-GH200-480GB", 900.0),
        ("NVIDIA-B200", 1000.0),
        ("Some-Future-GPU", None),
        ("", None),
        (None, None),
    ],
)
def test_nameplate_by_product_label(product: str | None, watts: float | None) -> None:
    assert nameplate_for_product(product) == watts


def _pod(containers: list[dict[str, Any]], init: list[dict[str, Any]] | None = None) -> Pod:
    spec: dict[str, Any] = {"containers": containers}
    if init is not None:
        spec["initContainers"] = init
    return Pod.model_validate({"metadata": {"name": "p"}, "spec": spec})


def _c(requests: Any = None, limits: Any = None) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if requests is not None:
        res["requests"] = {"nvidia.com/gpu": requests}
    if limits is not None:
        res["limits"] = {"nvidia.com/gpu": limits}
    return {"name": "c", "resources": res}


@pytest.mark.parametrize(
    ("case", "containers", "init", "gpus"),
    [
        ("limits only", [_c(limits="2")], None, 2),
        ("requests only", [_c(requests=4)], None, 4),
        ("containers add up", [_c(limits="2"), _c(limits=1)], None, 3),
        ("init container larger than the sum", [_c(limits="1")], [_c(limits="4")], 4),
        ("milli-units of whole GPUs", [_c(limits="2000m")], None, 2),
        ("no GPU", [{"name": "c"}], None, 0),
    ],
)
def test_requested_gpus(case: str, containers: list[dict[str, Any]], init: Any, gpus: int) -> None:
    assert requested_gpus(_pod(containers, init)) == gpus, case


@pytest.mark.parametrize("bad", ["1.5", "abc", "500m", -1, True, 2.5, "99999", [1], {"n": 1}])
def test_bad_gpu_quantity_is_a_bad_request(bad: Any) -> None:
    body = {"Pod": {"metadata": {"name": "p"}, "spec": {"containers": [_c(limits=bad)]}}, "NodeNames": []}
    with pytest.raises(BadRequest, match=r"nvidia\.com/gpu"):
        requested_gpus(parse_extender_args(body).pod)


def test_tier_annotation_and_nameplate_share() -> None:
    demand = pod_demand(Pod.model_validate(pod(gpus=2, tier="tolerant")), {}, STANDARD)
    assert (demand.tier, demand.gpus, demand.key) == (LatencyTier.TOLERANT, 2, "team/p")
    assert demand.watts_per_gpu(700.0) == pytest.approx(420.0)  # 60 % of nameplate


def test_class_expected_power_wins_over_nameplate() -> None:
    classes = {"chat": ClassView(tier=LatencyTier.CRITICAL, expected_watts_per_gpu=550.0)}
    demand = pod_demand(Pod.model_validate(pod(tier=None, workload_class="chat")), classes, STANDARD)
    assert demand.tier is LatencyTier.CRITICAL
    assert demand.watts_per_gpu(700.0) == 550.0


def test_tier_annotation_overrides_class_tier() -> None:
    classes = {"chat": ClassView(tier=LatencyTier.CRITICAL)}
    demand = pod_demand(Pod.model_validate(pod(tier="tolerant", workload_class="chat")), classes, STANDARD)
    assert demand.tier is LatencyTier.TOLERANT


def test_unknown_class_falls_back_and_says_so() -> None:
    demand = pod_demand(Pod.model_validate(pod(tier=None, workload_class="nope")), {}, STANDARD)
    assert demand.tier is STANDARD
    assert "not known" in demand.note


def test_bad_tier_annotation_falls_back_to_default_and_says_so() -> None:
    demand = pod_demand(Pod.model_validate(pod(tier="urgent")), {}, STANDARD)
    assert demand.tier is STANDARD
    assert "not a latency tier" in demand.note
