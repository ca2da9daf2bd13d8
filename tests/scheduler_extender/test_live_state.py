"""The live-state document (`GET /v1/state`): the contract between the operator and its readers."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tests.scheduler_extender.builders import budget, node, state
from wattwise.live_state import SCHEMA_VERSION, LiveState

EXAMPLE = {
    "schema_version": 1,
    "generated_at": "2026-11-23T12:00:00Z",
    "budgets": [
        {
            "name": "rack-a",
            "mode": "Enforce",
            "cap_w": 40000,
            "target_utilization": 0.95,
            "max_oversubscription": 1.3,
            "pue": 1.2,
            "facility_draw_w": 31000,
            "gpu_draw_w": 22000,
            "non_gpu_w": 4600,
            "headroom_w": 7000,
            "guaranteed_headroom_w": 9200,
            "committed_w": {"critical": 16800, "standard": 4200, "tolerant": 3000},
            "tolerant_floors_w": 3400,
            "allocated_default_limit_w": 28000,
            "feasible": True,
            "stale": False,
            "nodes": 4,
            "stale_nodes": 0,
            "gpus": 32,
            "gpus_limited": 3,
        }
    ],
    "nodes": {
        "gpu-a1": {
            "budgets": ["rack-a"],
            "gpu_product": "NVIDIA-H100-80GB-HBM3",
            "thermal_threshold_c": 85,
            "stale": False,
            "last_report_at": "2026-11-23T11:59:59.4Z",
            "gpus": [
                {
                    "uuid": "GPU-0a1",
                    "index": 0,
                    "temperature_c": 61,
                    "power_w": 540,
                    "limit_w": 700,
                    "default_limit_w": 700,
                    "tier": "critical",
                    "pod": "chat/llama-7b-0",
                }
            ],
        }
    },
    "classes": {"chat": {"tier": "critical", "expected_watts_per_gpu": 550, "priority": 10}},
}


def test_the_documented_example_parses_and_round_trips() -> None:
    live = LiveState.model_validate(EXAMPLE)
    assert live.schema_version == SCHEMA_VERSION
    assert LiveState.model_validate_json(live.model_dump_json()) == live
    assert live.pods() == {"chat/llama-7b-0"}
    assert live.nodes["gpu-a1"].max_temperature_c == 61
    b = live.budgets[0]
    assert (b.target_w, b.nameplate_w, b.oversubscription_bound_w) == (38_000.0, 28_000 * 1.2 + 4_600, 52_000.0)


def test_a_newer_operators_extra_fields_are_ignored() -> None:
    doc = json.loads(json.dumps(EXAMPLE))
    doc["budgets"][0]["future_field"] = 1
    doc["nodes"]["gpu-a1"]["gpus"][0]["mig"] = {"profile": "1g.10gb"}
    assert LiveState.model_validate(doc).budgets[0].name == "rack-a"


def test_a_node_in_an_unknown_budget_is_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown budget"):
        state([budget("r")], {"n": node(["r", "ghost"])})


def test_duplicate_budget_names_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unique"):
        state([budget("r"), budget("r")], {})


def test_another_schema_version_is_rejected() -> None:
    with pytest.raises(ValidationError):
        LiveState.model_validate({**EXAMPLE, "schema_version": 2})


def test_the_largest_default_limit_counts_on_a_mixed_node() -> None:
    view = node(["r"], gpus=2, default_limit_w=350.0).model_copy()
    gpus = [view.gpus[0], view.gpus[1].model_copy(update={"default_limit_w": 700.0})]
    assert view.model_copy(update={"gpus": gpus}).default_limit_w == 700.0
