"""Fixtures: an extender app with no refresher (tests feed its state cache) and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from tests.scheduler_extender.builders import SyncClient
from wattwise.scheduler_extender.app import create_app
from wattwise.scheduler_extender.settings import ExtenderSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(clock: FakeClock) -> Any:
    def make(**settings: Any) -> FastAPI:
        return create_app(ExtenderSettings(**settings), refresh=False, clock=clock)

    return make


@pytest.fixture
def app(make_app: Any) -> FastAPI:
    built: FastAPI = make_app()
    return built


@pytest.fixture
def client(app: FastAPI) -> Iterator[SyncClient]:
    c = SyncClient(app)
    yield c
    c.close()
