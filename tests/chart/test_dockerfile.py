"""The image's Dockerfile, checked without a Docker engine (there is none on the machines this is built on).

Two kinds of check: the Dockerfile's important properties read off the file (pinned base, multi-stage, wheels only
in the final stage, non-root numeric USER, exec-form ENTRYPOINT, no ADD), and its first stage re-enacted: the
wheel is built from exactly the files `.dockerignore` lets into the build context, offline, and must hold every
module, the data files and the `wattwise` entry point. What is left unchecked is the `docker build` itself.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.chart.helm import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, as (INSTRUCTION, arguments) with continuations joined."""
    logical = re.sub(r"\\\n\s*", " ", text)
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
        elif instruction == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], ""), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif stages:
            stages[-1].instructions.append((instruction, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


def test_base_images_are_pinned_by_tag(stages: list[Stage]) -> None:
    for stage in stages:
        repository, _, tag = stage.base.rpartition(":")
        assert repository and tag and tag != "latest", stage.base
        assert stage.base.startswith("python:3.11-slim"), stage.base


def test_the_final_stage_installs_wheels_only(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "multi-stage: build tools stay in the build stage"
    final = stages[-1]
    assert final.name is None or final.name != stages[0].name
    runs = " ".join(args for instruction, args in final.instructions if instruction == "RUN")
    assert "--no-index" in runs and "--find-links=/wheels" in runs
    assert "from=build" in runs
    assert not re.search(r"apt-get|apk add|gcc|build-essential", runs)
    copied = [args for instruction, args in final.instructions if instruction == "COPY"]
    assert copied == [], f"the final stage copies no source: {copied}"


def test_no_add_instruction(stages: list[Stage]) -> None:
    # ADD fetches URLs and unpacks archives implicitly; COPY says what it does.
    assert [s for s in stages if any(i == "ADD" for i, _ in s.instructions)] == []


def test_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    final = stages[-1].instructions
    users = [(i, args) for i, (instruction, args) in enumerate(final) if instruction == "USER"]
    assert users, "no USER in the final stage"
    index, user = users[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user
    assert uid == "65532"
    assert all(instruction != "RUN" for instruction, _ in final[index:]), "RUN after USER would run as that user"


def test_entrypoint_is_the_wattwise_cli_in_exec_form(stages: list[Stage]) -> None:
    entrypoints = [args for instruction, args in stages[-1].instructions if instruction == "ENTRYPOINT"]
    assert entrypoints == ['["wattwise"]']


def _ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        rules.append((negate, re.compile(f"^{regex}(/.*)?$")))
    return rules


def build_context(root: pathlib.Path) -> list[str]:
    """Paths .dockerignore lets into the build context (last matching rule wins, as in Docker)."""
    rules = _ignore_rules()
    kept = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or ".git" in path.parts:
            continue
        relative = path.relative_to(root).as_posix()
        included = True
        for negate, regex in rules:
            if regex.match(relative):
                included = negate
        if included:
            kept.append(relative)
    return kept


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    context = build_context(REPO)
    assert "pyproject.toml" in context and "README.md" in context
    assert "wattwise/cli.py" in context
    assert not [p for p in context if p.split("/")[0] not in ("pyproject.toml", "README.md", "wattwise")]
    assert not [p for p in context if "__pycache__" in p or p.endswith(".pyc")]


def test_the_build_stage_makes_a_complete_wheel(tmp_path: pathlib.Path) -> None:
    """`pip wheel .` on the Docker build context (offline: no dependencies, no build isolation)."""
    context = tmp_path / "context"
    for relative in build_context(REPO):
        target = context / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, target)
    out = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "--wheel-dir", str(out), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("wattwise-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "wattwise").rglob("*.py")}
    assert sources - names == set()
    assert {"wattwise/py.typed", "wattwise/data/splitwise_perf_model.csv"} <= names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "wattwise = wattwise.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
