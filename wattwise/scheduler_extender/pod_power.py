"""What a pod asks of the power budget: its GPUs, its latency tier, and its expected power per GPU (pure).

Expected power per GPU, first that applies:
1. the pod's WorkloadClass `expectedWattsPerGpu` (the owner measured it);
2. the node's GPU nameplate (default power limit from telemetry, else a table keyed by the
   `nvidia.com/gpu.product` label, else `FALLBACK_NAMEPLATE_W`), times the tier's share in `TIER_SHARE`:
   critical work is planned at full nameplate, standard slightly below, tolerant near where the control loop
   will hold it when power is tight. Missing data falls to the conservative end, never to "free power".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from wattwise.crd.annotations import AnnotationError, PodPowerIntent
from wattwise.crd.common import LatencyTier
from wattwise.live_state import ClassView
from wattwise.scheduler_extender.protocol import BadRequest, Container, Pod

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"

#: Unknown GPU: assume the largest common inference part (H100/H200 SXM) rather than under-count.
FALLBACK_NAMEPLATE_W = 700.0

TIER_SHARE: Mapping[LatencyTier, float] = {
    LatencyTier.CRITICAL: 1.0,
    LatencyTier.STANDARD: 0.85,
    LatencyTier.TOLERANT: 0.6,
}

#: (model token, qualifier token or None, board power W); first match wins, so qualified rows come first.
_NAMEPLATES: tuple[tuple[str, str | None, float], ...] = (
    ("B200", None, 1000.0),
    ("GH200", None, 900.0),
    ("H200", "NVL", 600.0),
    ("H200", None, 700.0),
    ("H100", "NVL", 400.0),
    ("H100", "PCIE", 350.0),
    ("H100", None, 700.0),
    ("A100", "PCIE", 300.0),
    ("A100", None, 400.0),
    ("L40S", None, 350.0),
    ("L40", None, 300.0),
    ("L4", None, 72.0),
    ("A40", None, 300.0),
    ("A30", None, 165.0),
    ("A10G", None, 300.0),
    ("A10", None, 150.0),
    ("T4", None, 70.0),
    ("V100", "PCIE", 250.0),
    ("V100", None, 300.0),
)
_QUANTITY_RE = re.compile(r"^\s*(\d+)(m?)\s*$")


def nameplate_for_product(product: str | None) -> float | None:
    """Board power of a GPU named by its `nvidia.com/gpu.product` label (`NVIDIA-H100-80GB-HBM3`), or None."""
    if not product:
        return None
    tokens = set(re.split(r"[-_\s]+", product.upper()))
    # "SXM4"/"PCIE-80GB" style suffixes: match a qualifier as a token prefix too.
    for model, qualifier, watts in _NAMEPLATES:
        if model in tokens and (qualifier is None or any(t.startswith(qualifier) for t in tokens)):
            return watts
    return None


def _gpu_quantity(value: object, where: str) -> int:
    if isinstance(value, bool):
        raise BadRequest([f"{where}: {value!r} is not a GPU count"])
    if isinstance(value, int):
        count = value
    elif isinstance(value, float) and value.is_integer():
        count = int(value)
    elif isinstance(value, str) and (m := _QUANTITY_RE.match(value)):
        number, milli = int(m.group(1)), m.group(2)
        if milli and number % 1000:
            raise BadRequest([f"{where}: {value!r} is not a whole number of GPUs"])
        count = number // 1000 if milli else number
    else:
        raise BadRequest([f"{where}: {value!r} is not a whole number of GPUs"])
    if count < 0 or count > 1024:
        raise BadRequest([f"{where}: {count} GPUs is out of range"])
    return count


def _container_gpus(c: Container, where: str) -> int:
    res = c.resources
    if res is None:
        return 0
    # Extended resources: requests == limits when both are set; limits alone imply the request.
    for kind, values in (("requests", res.requests), ("limits", res.limits)):
        if values and GPU_RESOURCE in values:
            return _gpu_quantity(values[GPU_RESOURCE], f"{where}.resources.{kind}[{GPU_RESOURCE}]")
    return 0


def requested_gpus(pod: Pod) -> int:
    """GPUs the pod holds: max(sum over containers, largest init container), as the scheduler counts."""
    total = sum(_container_gpus(c, f"Pod.spec.containers[{i}]") for i, c in enumerate(pod.spec.containers))
    init = [_container_gpus(c, f"Pod.spec.initContainers[{i}]") for i, c in enumerate(pod.spec.init_containers or [])]
    return max([total, *init])


@dataclasses.dataclass(frozen=True, slots=True)
class PodDemand:
    """The pod as placement sees it. `class_watts_per_gpu` is None when the node's nameplate decides."""

    key: str
    gpus: int
    tier: LatencyTier
    class_watts_per_gpu: float | None
    #: Why the tier is what it is, when that is not simply the annotation (fallbacks are said out loud).
    note: str = ""

    def watts_per_gpu(self, node_nameplate_w: float) -> float:
        if self.class_watts_per_gpu is not None:
            return self.class_watts_per_gpu
        return node_nameplate_w * TIER_SHARE[self.tier]


def pod_demand(pod: Pod, classes: Mapping[str, ClassView], default_tier: LatencyTier) -> PodDemand:
    """Resolve tier and class from annotations; raise BadRequest only for a malformed GPU quantity."""
    gpus = requested_gpus(pod)
    note = ""
    try:
        intent = PodPowerIntent.from_annotations(pod.metadata.annotations)
    except AnnotationError as exc:
        intent, note = PodPowerIntent(), f"{exc}; using default tier {default_tier.value}"
    klass = classes.get(intent.workload_class) if intent.workload_class else None
    if intent.workload_class and klass is None:
        note = f"WorkloadClass {intent.workload_class!r} not known to the operator; using nameplate power"
    tier = intent.resolve_tier(klass.tier if klass else None, default_tier)
    watts = klass.expected_watts_per_gpu if klass else None
    return PodDemand(key=pod.key, gpus=gpus, tier=tier, class_watts_per_gpu=watts, note=note)
