"""`wattwise simulate`: a short, scaled-down headline run end to end, its JSON contract and its errors."""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
from typing import Any

import pytest

from wattwise.cli import main

RUN_KEYS = {
    "seconds_above_cap_fraction",
    "facility_draw_p50_fraction",
    "facility_draw_p99_fraction",
    "throughput_tokens_per_s",
    "critical_p99_latency_s",
    "tolerant_median_completion_s",
    "critical_gpus_limited_while_tolerant_above_floor",
}


@pytest.fixture(scope="module")
def short_headline(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], pathlib.Path]:
    out = tmp_path_factory.mktemp("sim")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(
            ["simulate", "--scenario", "headline", "--gpus", "16", "--duration", "180", "--json", "--out", str(out)]
        )
    assert code == 0
    return json.loads(buffer.getvalue()), out


def test_json_report_has_the_stable_keys(short_headline: tuple[dict[str, Any], pathlib.Path]) -> None:
    report, _ = short_headline
    assert set(report["runs"]) == {"baseline", "unmanaged", "wattwise"}
    for run in report["runs"].values():
        assert run.keys() >= RUN_KEYS
        assert set(run["throughput_tokens_per_s"]) == {"total", "critical", "standard", "tolerant"}
        assert isinstance(run["critical_gpus_limited_while_tolerant_above_floor"], int)
    assert report["runs"]["baseline"]["gpus"] == 16
    assert report["runs"]["wattwise"]["gpus"] == 20  # 16 x 1.3, rounded to whole 2-GPU replicas
    assert len(report["criteria"]) == 5
    site = report["runs"]["unmanaged"]["domains"]["site"]
    assert site["seconds_above_cap_fraction"] == report["runs"]["unmanaged"]["seconds_above_cap_fraction"]


def test_rack_budgets_hold_under_wattwise(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "simulate",
            "--gpus",
            "16",
            "--duration",
            "120",
            "--rack-nodes",
            "1",
            "--rack-cap",
            "0.8",
            "--json",
            "--no-plot",
            "--out",
            str(tmp_path),
        ]
    )
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert code == 0
    assert set(runs["baseline"]["domains"]) == {"site", "rack-0", "rack-1"}
    assert set(runs["wattwise"]["domains"]) == {"site", "rack-0", "rack-1", "rack-2"}
    unmanaged = max(d["seconds_above_cap_fraction"] for d in runs["unmanaged"]["domains"].values())
    managed = max(d["seconds_above_cap_fraction"] for d in runs["wattwise"]["domains"].values())
    assert unmanaged > 0.2
    assert managed <= 0.03


def test_wattwise_stays_under_the_cap_where_unmanaged_does_not(
    short_headline: tuple[dict[str, Any], pathlib.Path],
) -> None:
    runs = short_headline[0]["runs"]
    assert runs["baseline"]["seconds_above_cap_fraction"] == 0.0
    assert runs["unmanaged"]["seconds_above_cap_fraction"] > 0.10
    assert runs["wattwise"]["seconds_above_cap_fraction"] <= 0.02
    assert runs["wattwise"]["facility_draw_p99_fraction"] < runs["unmanaged"]["facility_draw_p99_fraction"]
    # Same workload code and seed: the critical tier sees exactly the same requests in every run.
    assert runs["baseline"]["throughput_tokens_per_s"]["critical"] == pytest.approx(
        runs["unmanaged"]["throughput_tokens_per_s"]["critical"]
    )
    assert runs["wattwise"]["critical_gpus_limited_while_tolerant_above_floor"] == 0


def test_report_and_plot_are_written(short_headline: tuple[dict[str, Any], pathlib.Path]) -> None:
    report, out = short_headline
    assert json.loads((out / "report.json").read_text())["runs"].keys() == report["runs"].keys()
    assert (out / "power.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_output_names_every_run_and_criterion(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--gpus", "8", "--duration", "20", "--no-plot", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "baseline" in out and "unmanaged" in out and "wattwise" in out
    assert out.count("[PASS]") + out.count("[FAIL]") == 5
    assert not (tmp_path / "power.png").exists()


def test_custom_trace_and_scale(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.csv"
    rows = "\n".join(f"{i * 0.7:.1f},{500 + i % 7 * 100},{5 + i % 11}" for i in range(60))
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + rows + "\n")
    code = main(
        [
            "simulate",
            "--trace",
            str(trace),
            "--scale",
            "2",
            "--gpus",
            "8",
            "--json",
            "--no-plot",
            "--out",
            str(tmp_path),
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["trace"] == str(trace)
    assert report["runs"]["baseline"]["simulated_s"] == 41  # the trace's own length
    assert report["runs"]["baseline"]["critical_requests_completed"] > 60  # scaled x2


def test_bad_trace_is_a_clear_error(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("when,prompt,output\n1,2,3\n")
    assert main(["simulate", "--trace", str(trace), "--out", str(tmp_path)]) == 2
    assert "missing column(s) TIMESTAMP" in capsys.readouterr().err


def test_bad_arguments_are_refused(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scale", "0", "--out", str(tmp_path)]) == 2
    assert main(["simulate", "--gpus", "3", "--out", str(tmp_path)]) == 2
    assert main(["simulate", "--target", "1.5", "--out", str(tmp_path)]) == 2
    assert "multiple of 2" in capsys.readouterr().err


@pytest.mark.parametrize("scenario", ["synthetic", "heatwave"])
def test_other_scenarios_run(scenario: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "simulate",
            "--scenario",
            scenario,
            "--gpus",
            "8",
            "--duration",
            "60",
            "--json",
            "--no-plot",
            "--out",
            str(tmp_path),
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["scenario"] == scenario
    assert report["runs"]["wattwise"]["simulated_s"] == 60


def test_no_envelopes_runs_a_1hz_only_loop(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--gpus", "16", "--duration", "120", "--json", "--no-plot", "--out", str(tmp_path)]
    assert main([*args, "--no-envelopes"]) == 0
    slow = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    fast = json.loads(capsys.readouterr().out)
    assert slow["params"]["envelopes"] is False and fast["params"]["envelopes"] is True
    # The same decisions every second; only the node loop between them differs, and it uses the stranded watts.
    assert (
        fast["runs"]["wattwise"]["facility_draw_p50_fraction"] > slow["runs"]["wattwise"]["facility_draw_p50_fraction"]
    )
