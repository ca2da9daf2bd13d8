"""The wire schema's words that need no validation library: its version, paths, headers and enumerations.

`wattwise.telemetry.wire` (the pydantic models, the contract the operator validates against) and
`wattwise.telemetry.messages` (the node agent's dependency-free mirror of them) both take these from here, so the
two cannot disagree on a name or a value. Importing this module costs nothing but the standard library.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

#: Schema version carried in every message's `apiVersion`.
API_VERSION: Final = "telemetry.wattwise.dev/v1"
#: Where the operator serves the hot path; the version is in the path so v2 can live beside v1.
REPORT_PATH = "/v1/reports"
#: Request header carrying the agent's projected ServiceAccount token (`Bearer <token>`).
AUTH_HEADER = "Authorization"
#: Default location of the projected token in the agent pod (see the chart's DaemonSet volume).
DEFAULT_TOKEN_FILE = "/var/run/secrets/wattwise/token"
#: Audience the projected token is minted for; the operator's TokenReview asks for this audience.
TOKEN_AUDIENCE = "wattwise-operator"

#: The values of `wattwise.crd.LatencyTier`, spelled out so the agent need not import the CRD models (which
#: would cost the DaemonSet ~10 MiB of RSS); tests/node_agent pins the two together.
Tier = Literal["critical", "standard", "tolerant"]


def bearer(token: str) -> dict[str, str]:
    """The header dict for a token, stripped of the trailing newline token files usually end with."""
    return {AUTH_HEADER: f"Bearer {token.strip()}"}


class GpuStatus(enum.StrEnum):
    OK = "ok"  #: sampled; optional fields absent only where the GPU does not support them
    LOST = "lost"  #: NVML says the GPU has fallen off the bus; nothing else about it can be trusted
    ERROR = "error"  #: the sample failed for another reason (see `error`)


class AgentMode(enum.StrEnum):
    """Where the agent stands with the operator."""

    STANDALONE = "standalone"  #: no operator configured: telemetry and metrics only, limits never touched
    CONNECTED = "connected"  #: the last report was answered; the reply's limits are in force
    GRACE = "grace"  #: the operator is unreachable; the last limits are kept until the grace period ends
    FAIL_SAFE = "failSafe"  #: the grace period is over; the fail-safe limits are in force


class ActuationResult(enum.StrEnum):
    APPLIED = "applied"  #: the limit was set and read back equal
    UNCHANGED = "unchanged"  #: the GPU already had the target limit: nothing was written
    MISMATCH = "mismatch"  #: set, but the enforced limit read back differs (another tool, or firmware)
    NO_PERMISSION = "noPermission"  #: NVML refused: the agent needs CAP_SYS_ADMIN (or root) to set limits
    NOT_SUPPORTED = "notSupported"  #: this GPU does not allow setting its power limit or clocks
    INVALID_ARGUMENT = "invalidArgument"  #: NVML rejected the value (outside constraints)
    ERROR = "error"  #: any other failure; see `message`
