"""The `wattwise` command line: help lists the roles, validate checks manifests offline."""

import pathlib
import subprocess
import sys

from wattwise.cli import main

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_python_dash_m_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "wattwise", "--help"], capture_output=True, text=True, check=True)
    assert "validate" in out.stdout


def test_validate_accepts_examples(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["validate", *map(str, sorted((REPO / "examples").glob("*.yaml")))]) == 0
    assert "PowerBudget/facility: valid" in capsys.readouterr().out


def test_validate_reports_each_problem(capsys) -> None:  # type: ignore[no-untyped-def]
    bad = REPO / "tests" / "fixtures" / "invalid" / "pb_thresholds_out_of_order.yaml"
    assert main(["validate", str(bad)]) == 1
    assert "thresholds must be ordered" in capsys.readouterr().err


def test_validate_unreadable_file(tmp_path: pathlib.Path, capsys) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed")
    assert main(["validate", str(broken)]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_every_role_is_listed() -> None:
    out = subprocess.run([sys.executable, "-m", "wattwise", "--help"], capture_output=True, text=True, check=True)
    for command in ("operator", "agent", "extender", "simulate", "status", "validate"):
        assert command in out.stdout


def test_a_role_imports_only_its_own_module() -> None:
    heavy = ("wattwise.operator.cli", "wattwise.node_agent.cli", "kopf", "fastapi")
    probe = (
        "import sys; from wattwise.cli import build_parser; build_parser('validate');"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
