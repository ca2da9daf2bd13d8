"""Evaluate a CRD's openAPIV3Schema the way kube-apiserver does, without an API server.

Defaults first, then structural validation (with strict field validation: unknown fields are errors), then the
CEL `x-kubernetes-validations`, with `number` fields as CEL doubles as Kubernetes types them. The control-plane
tests check the same objects against a real kube-apiserver; this lets the unit suite prove model/YAML parity fast.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import celpy
import jsonschema
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"


def load_crd_schema(kind: str) -> dict[str, Any]:
    for path in CRD_DIR.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    raise LookupError(f"no CRD for kind {kind} in {CRD_DIR}")


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Fill `default`s for absent properties, recursing into objects and arrays (apiserver defaulting).

    Like kube-apiserver, a null in a field that is not `nullable` is pruned before defaulting.
    """
    obj = copy.deepcopy(obj)
    if isinstance(obj, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name in obj and obj[name] is None and not sub.get("nullable"):
                del obj[name]
        for name, sub in schema["properties"].items():
            if name not in obj and "default" in sub:
                obj[name] = copy.deepcopy(sub["default"])
            if name in obj:
                obj[name] = apply_defaults(sub, obj[name])
    elif isinstance(obj, list) and "items" in schema:
        obj = [apply_defaults(schema["items"], item) for item in obj]
    return obj


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop Kubernetes extensions; forbid unknown fields like `kubectl apply --validate=strict`."""
    out: dict[str, Any] = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in out:
        out["properties"] = {name: _strict(sub) for name, sub in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(out["additionalProperties"])
    if "items" in out:
        out["items"] = _strict(out["items"])
    return out


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def structural_errors(schema: dict[str, Any], obj: Any) -> list[str]:
    validator = jsonschema.Draft4Validator(_strict(schema))
    errors = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            for name in extra:
                errors.append(f'unknown field "{_path([*err.absolute_path, name])}"')
        elif err.validator == "required":
            missing = err.message.split("'")[1]
            errors.append(f"{_path([*err.absolute_path, missing])}: Required value")
        else:
            errors.append(f"{_path(err.absolute_path)}: {err.message}")
    return errors


def _typed(schema: dict[str, Any], value: Any) -> Any:
    """JSON value -> the value CEL sees: `number` fields are doubles even when written as 300."""
    kind = schema.get("type")
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: _typed(props.get(k, extra if isinstance(extra, dict) else {}), v) for k, v in value.items()}
    if kind == "array" and isinstance(value, list):
        return [_typed(schema.get("items", {}), v) for v in value]
    return value


def cel_errors(schema: dict[str, Any], obj: Any, path: str = "") -> list[str]:
    errors: list[str] = []
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        try:
            ok = program.evaluate({"self": celpy.json_to_cel(_typed(schema, obj))})
        except celpy.CELEvalError as exc:  # Kubernetes reports evaluation errors as invalid too
            errors.append(f"{path}: Invalid value: rule {rule['rule']!r} failed to evaluate: {exc.args[0]}")
            continue
        if not ok:
            errors.append(f"{path}: Invalid value: {rule.get('message', rule['rule'])}")
    if isinstance(obj, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in obj:
                errors += cel_errors(sub, obj[name], f"{path}.{name}" if path else name)
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            errors += cel_errors(schema["items"], item, f"{path}[{i}]")
    return errors


def crd_errors(kind: str, obj: dict[str, Any]) -> list[str]:
    """Every reason kube-apiserver would give for rejecting `obj`; CEL runs only on structurally valid input."""
    schema = load_crd_schema(kind)
    defaulted = apply_defaults(schema, obj)
    errors = structural_errors(schema, defaulted)
    return errors or cel_errors(schema, defaulted)
