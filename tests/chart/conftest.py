"""Fixtures for the chart tests: the real Helm CLI (skipped without Go, a failure when CI requires it)."""

from __future__ import annotations

import pathlib

import pytest

from tests.chart import helm as helm_support
from tests.chart.scenarios import SCENARIOS
from tests.support import cluster_bins


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> helm_support.Helm:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    try:
        # A cold build prints its progress instead of looking hung.
        if capture is not None:
            with capture.global_and_fixture_disabled():
                binary = helm_support.helm_binary()
        else:
            binary = helm_support.helm_binary()
    except helm_support.HelmUnavailable as error:
        if cluster_bins.required():
            pytest.fail(f"{error} ({cluster_bins.REQUIRE_ENV} is set)", pytrace=False)
        pytest.skip(str(error))
    home: pathlib.Path = tmp_path_factory.mktemp("helm-home")
    return helm_support.Helm(binary, home)


@pytest.fixture(scope="session")
def rendered(helm: helm_support.Helm) -> dict[str, list[helm_support.Manifest]]:
    """Every scenario rendered once per session: {scenario name: documents}."""
    return {
        name: helm.template(values, release=release, namespace=namespace)
        for name, (release, namespace, values) in SCENARIOS.items()
    }
