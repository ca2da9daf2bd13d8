"""One control-loop decision for 10,000 GPUs in 50 budgets (racks inside rows inside a facility)."""

from __future__ import annotations

import random
import statistics
import time

from wattwise.crd.common import LatencyTier
from wattwise.policy import BudgetState, Decision, GpuLimits, GpuState, decide

H100 = GpuLimits(min_w=200.0, max_w=700.0, default_w=700.0)


def fleet(n_gpus: int, seed: int = 7) -> tuple[list[BudgetState], dict[str, GpuState]]:
    """45 rack budgets in 4 rows and one facility: 50 budgets, and every GPU sits in three of them.

    Budgets select whole nodes (8 GPUs each), as a PowerBudget's nodeSelector does, so nodes get envelopes."""
    rng = random.Random(seed)
    tiers = [LatencyTier.CRITICAL, LatencyTier.STANDARD, LatencyTier.TOLERANT]
    gpus = {}
    for i in range(n_gpus):
        uuid = f"GPU-{i:05d}"
        gpus[uuid] = GpuState(
            uuid=uuid,
            node=f"node-{i // 8}",
            tier=rng.choices(tiers, weights=[3, 2, 5])[0],
            limits=H100,
            enforced_limit_w=700.0,
            power_w=None if rng.random() < 0.01 else rng.uniform(80.0, 700.0),
            floor_w=250.0,
        )
    uuids = sorted(gpus)
    racks: list[list[str]] = [[] for _ in range(45)]
    for u in uuids:
        racks[(int(u.removeprefix("GPU-")) // 8) % 45].append(u)
    rows = [[u for rack in racks[k::4] for u in rack] for k in range(4)]

    def budget(name: str, members: list[str], share: float) -> BudgetState:
        return BudgetState(name, share * 700.0 * len(members), tuple(members), len(members) // 8, 400.0, pue=1.2)

    return (
        [budget(f"rack-{r}", m, 0.75) for r, m in enumerate(racks)]
        + [budget(f"row-{k}", m, 0.7) for k, m in enumerate(rows)]
        + [budget("facility", uuids, 0.65)]
    ), gpus


def main(argv: list[str]) -> None:
    del argv
    for n_gpus in (1_000, 10_000):
        budgets, gpus = fleet(n_gpus)
        previous: Decision = decide(budgets, gpus)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            previous = decide(budgets, gpus, previous)
            times.append(time.perf_counter() - started)
        limited = sum(r.gpus_limited for r in previous.budgets.values())
        print(
            f"decide(): {n_gpus:>6,} GPUs in {len(budgets)} budgets: median {statistics.median(times) * 1e3:7.1f} ms, "
            f"min {min(times) * 1e3:7.1f} ms per tick ({limited:,} GPU-budget pairs limited, "
            f"{len(previous.envelopes):,} node envelopes)"
        )
