"""`wattwise validate FILE...`: check PowerBudget and WorkloadClass manifests offline, before `kubectl apply`."""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any

import yaml

from wattwise.crd.parse import KINDS, InvalidResource, parse_resource


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="check PowerBudget/WorkloadClass manifests offline")
    p.add_argument("files", nargs="+", type=pathlib.Path, help="YAML files (multi-document allowed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            docs: list[Any] = [d for d in yaml.safe_load_all(path.read_text()) if d]
        except (OSError, yaml.YAMLError) as exc:
            print(f"{path}: cannot read: {exc}", file=sys.stderr)
            failed += 1
            continue
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") not in KINDS:
                continue  # other kinds (Pods, ...) are not ours to judge
            name = (doc.get("metadata") or {}).get("name", "?")
            try:
                parse_resource(doc)
            except InvalidResource as exc:
                failed += 1
                for problem in exc.problems:
                    print(f"{path}: {doc['kind']}/{name}: {problem}", file=sys.stderr)
            else:
                print(f"{path}: {doc['kind']}/{name}: valid")
    return 1 if failed else 0
