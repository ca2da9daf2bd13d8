"""The agent runs on every GPU node, so what it imports is part of its footprint (see benchmarks/bench_agent.py):
pin the heavy modules it must not pull in, for both ways of starting it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: top-level modules that cost the DaemonSet memory for nothing it uses: pydantic (~18 MiB; the agent speaks
#: the wire schema through telemetry.messages), the operator's web and Kubernetes stacks, and numpy (only the
#: simulated GPUs need it)
FORBIDDEN = {"pydantic", "pydantic_core", "fastapi", "starlette", "httpx", "kubernetes", "kopf", "yaml", "numpy"}
#: wattwise modules the agent must not load: the CRD models, the pydantic wire models, the other roles
FORBIDDEN_WATTWISE = ("wattwise.crd", "wattwise.telemetry.wire", "wattwise.operator", "wattwise.scheduler_extender")

_PROBE = """
import json, sys
{setup}
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize(
    "setup",
    [
        "import wattwise.cli as c; c.build_parser('agent')",  # `wattwise agent`
        "import wattwise.node_agent.__main__",  # `python -m wattwise.node_agent`
        "import wattwise.node_agent.cli as c; import pynvml; c.build_agent",  # what --backend nvml adds at start
    ],
    ids=["wattwise-agent", "python-m", "nvml-backend"],
)
def test_the_agent_imports_nothing_heavy_it_does_not_use(setup: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(setup=setup)], capture_output=True, text=True, timeout=60, check=True
    )
    modules = set(json.loads(out.stdout))
    assert "wattwise.node_agent.agent" in modules  # the probe did load the agent
    assert {m.split(".")[0] for m in modules} & FORBIDDEN == set()
    assert sorted(m for m in modules if m.startswith(FORBIDDEN_WATTWISE)) == []
