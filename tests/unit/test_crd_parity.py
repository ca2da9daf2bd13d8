"""The CRD YAML and the pydantic models are one contract: they accept, reject and default alike."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.support.crd_schema import REPO, apply_defaults, crd_errors, load_crd_schema
from wattwise.crd.parse import InvalidResource, parse_resource

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
INVALID = sorted((REPO / "tests" / "fixtures" / "invalid").glob("*.yaml"))


def _load(path: pathlib.Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _expectation(path: pathlib.Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message>'"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if _load(p)["apiVersion"].startswith("wattwise")], ids=lambda p: p.name
)
def test_examples_accepted_by_both(path: pathlib.Path) -> None:
    obj = _load(path)
    assert crd_errors(obj["kind"], obj) == []
    parse_resource(obj)


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if _load(p)["apiVersion"].startswith("wattwise")], ids=lambda p: p.name
)
def test_defaults_agree(path: pathlib.Path) -> None:
    obj = _load(path)
    server_side = apply_defaults(load_crd_schema(obj["kind"]), obj)["spec"]
    model_side = parse_resource(obj).spec.to_wire()
    assert model_side == server_side


def test_minimal_budget_defaults_agree() -> None:
    obj = {
        "apiVersion": "wattwise.dev/v1alpha1",
        "kind": "PowerBudget",
        "metadata": {"name": "m"},
        "spec": {"capWatts": 1000, "nodeSelector": {}},
    }
    assert parse_resource(obj).spec.to_wire() == apply_defaults(load_crd_schema("PowerBudget"), obj)["spec"]


def test_enough_distinct_invalid_fixtures() -> None:
    assert len(INVALID) >= 10
    assert len({_expectation(p) for p in INVALID}) >= 10


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_rejected_by_schema_with_message(path: pathlib.Path) -> None:
    obj = _load(path)
    errors = crd_errors(obj["kind"], obj)
    assert errors, f"{path.name} was accepted by the CRD schema"
    assert any(_expectation(path) in e for e in errors), errors


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_rejected_by_model_with_message(path: pathlib.Path) -> None:
    with pytest.raises(InvalidResource) as info:
        parse_resource(_load(path))
    assert any(_expectation(path) in p for p in info.value.problems), info.value.problems


# Property: for random specs mixing valid and invalid values, model and schema reach the same verdict.
def _mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly valid values, so that both verdicts are common and the cross-field rules get exercised."""
    return st.integers(0, 15).flatmap(lambda roll: invalid if roll == 0 else valid)


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


_bad = st.sampled_from(["x", None, True, -1, 0, 1e12])
_num = _mostly(st.one_of(st.integers(1, 5000), st.floats(1, 5000, allow_nan=False)), _bad)
_frac = _mostly(st.sampled_from([0.3, 0.5, 0.9, 0.92, 0.95, 0.98, 1, 1.0]), st.one_of(_bad, st.floats(0, 1.2)))


budget_specs = _optional(
    capWatts=_num,
    nodeSelector=_mostly(st.sampled_from([{}, {"matchLabels": {"rack": "a"}}]), st.just("rack=a")),
    nonGpuPower=_optional(perNodeBaseWatts=_num, pue=_mostly(st.floats(1, 4), st.floats(0.5, 5))),
    targetUtilization=_frac,
    thresholds=_optional(lowerAboveFraction=_frac, raiseBelowFraction=_frac),
    mode=_mostly(st.sampled_from(["Monitor", "Recommend", "Enforce"]), st.just("enforce")),
    rampWattsPerSecond=_num,
    failSafe=_optional(gracePeriodSeconds=_mostly(st.integers(1, 3600), _bad), limitWatts=_num, limitFraction=_frac),
    emergencyPolicy=_mostly(st.sampled_from(["HoldFloors", "BelowFloors"]), st.just("Panic")),
    maxOversubscription=_mostly(st.floats(1, 4), st.floats(0.5, 5)),
)

class_specs = _optional(
    tier=_mostly(st.sampled_from(["critical", "standard", "tolerant"]), st.just("urgent")),
    mode=_mostly(st.sampled_from(["LowLatency", "EnergyEfficient", "Throughput"]), st.just("Fast")),
    expectedWattsPerGpu=_num,
    floor=_optional(watts=_num, fraction=_frac),
    ceilingWatts=_num,
    priority=_mostly(st.integers(0, 1000), st.sampled_from(["high", -1, 1001, 2.5])),
    lockedSmClocks=_optional(
        minMHz=_mostly(st.integers(100, 5000), _bad), maxMHz=_mostly(st.integers(100, 5000), _bad)
    ),
)


def _verdicts(kind: str, spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    obj = {"apiVersion": "wattwise.dev/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    schema_errors = crd_errors(kind, obj)
    try:
        parse_resource(obj)
        model_errors: list[str] = []
    except InvalidResource as exc:
        model_errors = exc.problems
    return schema_errors, model_errors


@given(budget_specs)
def test_budget_model_and_schema_agree(spec: dict[str, Any]) -> None:
    schema_errors, model_errors = _verdicts("PowerBudget", spec)
    assert bool(schema_errors) == bool(model_errors), (schema_errors, model_errors)


@given(class_specs)
def test_class_model_and_schema_agree(spec: dict[str, Any]) -> None:
    schema_errors, model_errors = _verdicts("WorkloadClass", spec)
    assert bool(schema_errors) == bool(model_errors), (schema_errors, model_errors)
