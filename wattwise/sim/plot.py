"""The report's PNG: facility power against the cap, per-tier GPU power, and GPUs limited, over time.

matplotlib with the Agg backend (no display needed); imported lazily by the CLI so that the rest of the
simulator never pays for matplotlib's import.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): the backend must be chosen first
import numpy as np

from wattwise.sim.fleet import TIERS, RunResult

_COLOURS = {"baseline": "tab:blue", "unmanaged": "tab:red", "wattwise": "tab:green"}


def write_plot(path: pathlib.Path, results: Sequence[tuple[str, str, RunResult]], title: str) -> None:
    """Three panels sharing the time axis; per-tier power is drawn for the managed run (or the last one)."""
    fig, (ax_power, ax_tier, ax_limited) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    cap_kw = results[0][2].config.site.cap_w / 1000
    for name, label, result in results:
        t = np.arange(len(result.facility_w)) / 60.0
        ax_power.plot(t, result.facility_w / 1000, lw=0.8, color=_COLOURS.get(name), label=label)
        ax_limited.plot(t, result.limited_gpus, lw=0.8, color=_COLOURS.get(name), label=name)
    ax_power.axhline(cap_kw, color="black", ls="--", lw=1, label=f"cap {cap_kw:.1f} kW")
    ax_power.set_ylabel("facility power (kW)")
    low, high = ax_power.get_ylim()
    ax_power.set_ylim(low, high + 0.35 * (high - low))  # room for the legend above the curves
    ax_power.legend(loc="upper left", fontsize=8, ncol=2, framealpha=0.9)
    ax_power.set_title(title)

    name, _label, shown = next(((n, lb, r) for n, lb, r in results if n == "wattwise"), results[-1])
    t = np.arange(len(shown.facility_w)) / 60.0
    ax_tier.stackplot(
        t,
        [shown.tier_gpu_w[tier] / 1000 for tier in TIERS],
        labels=[tier.value for tier in TIERS],
        alpha=0.8,
    )
    ax_tier.set_ylabel(f"GPU power by tier, {name} (kW)")
    low, high = ax_tier.get_ylim()
    ax_tier.set_ylim(low, high * 1.2)
    ax_tier.legend(loc="upper left", fontsize=8, ncol=3, framealpha=0.9)

    ax_limited.set_ylabel("GPUs limited")
    ax_limited.set_xlabel("simulated minutes")
    ax_limited.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
