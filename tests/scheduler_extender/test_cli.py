"""`wattwise extender` is registered and validates its flags before starting a server."""

from __future__ import annotations

import pytest

from wattwise.cli import build_parser, main


def test_extender_subcommand_is_registered() -> None:
    args = build_parser().parse_args(["extender", "--port", "9999", "--operator-url", "http://op:8080"])
    assert (args.command, args.port, args.operator_url, args.host) == ("extender", 9999, "http://op:8080", "0.0.0.0")


def test_tls_cert_without_key_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extender", "--tls-cert-file", "/tmp/cert.pem"]) == 2
    assert "go together" in capsys.readouterr().out
