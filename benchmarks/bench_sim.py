"""How fast the simulator runs the headline fleet: simulated seconds per wall second, with and without policy.

`make demo` runs three headline runs over the whole shipped trace (~3,400 simulated s each); this tells how much
of that is physics and serving (unmanaged) and how much the policy adds (wattwise).
"""

from __future__ import annotations

import time

from wattwise.sim.fleet import run_fleet
from wattwise.sim.scenarios import HeadlineParams, headline


def main(argv: list[str]) -> None:
    duration = float(argv[0]) if argv else 600.0
    runs = {r.name: r for r in headline(HeadlineParams(duration_s=duration))}
    for name in ("unmanaged", "wattwise"):
        run = runs[name]
        started = time.perf_counter()
        result = run_fleet(name, run.config, run.controller)
        wall = time.perf_counter() - started
        steps = duration / run.config.physics_dt_s
        policy = f", policy {result.control_wall_s / duration * 1e3:.2f} ms per 1 s tick" if run.controller else ""
        print(
            f"{name:>9}: {run.config.gpu_count} GPUs, {duration:.0f} simulated s in {wall:.2f} s wall = "
            f"{duration / wall:,.0f} simulated s/s ({wall / steps * 1e6:.0f} us per 100 ms step{policy})"
        )
