"""Extender settings: environment variables `WATTWISE_EXTENDER_*`, overridden by `wattwise extender` flags."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from wattwise.crd.common import LatencyTier
from wattwise.scheduler_extender.placement import PlacementConfig

SCHEDULER_NAME = "wattwise-scheduler"


class ExtenderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WATTWISE_EXTENDER_", frozen=True)

    #: Base URL of the operator's live-state API; `/v1/state` is appended.
    operator_url: str = "http://wattwise-operator.wattwise-system.svc:8080"
    refresh_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    fetch_timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    #: Older than this, the live state no longer justifies rejecting a node.
    stale_after_s: Annotated[float, Field(gt=0)] = 5.0
    #: How long a just-placed pod holds its watts if the telemetry never shows it (bind, admission, a report).
    reservation_ttl_s: Annotated[float, Field(gt=0)] = 120.0
    default_tier: LatencyTier = LatencyTier.STANDARD
    thermal_threshold_c: Annotated[float, Field(gt=0, le=150)] = 83.0
    #: Profiles whose pods the extender judges; pods of other profiles pass through. Empty = every pod.
    scheduler_names: frozenset[str] = frozenset({SCHEDULER_NAME})
    #: A full v1.NodeList of 5,000 nodes is tens of MB; refuse anything larger than this.
    max_body_bytes: Annotated[int, Field(gt=0)] = 64 * 1024 * 1024

    def placement(self) -> PlacementConfig:
        return PlacementConfig(
            stale_after_s=self.stale_after_s,
            thermal_threshold_c=self.thermal_threshold_c,
            default_tier=self.default_tier,
            scheduler_names=self.scheduler_names,
        )
