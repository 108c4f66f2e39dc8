"""What one device is told (:class:`AgentConfig`) and what a sync reports back (:class:`SyncOutcome`)."""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from edge_sync.contract import DECODERS, MAX_WINDOW_COUNT, NAME, Task

__all__ = ["AGENT_TASKS", "AgentConfig", "SyncOutcome", "SyncStatus", "utc_now"]

SyncStatus = Literal["up_to_date", "activated", "hold", "no_deployment", "refused", "server_unreachable"]

AGENT_TASKS: frozenset[Task] = frozenset(DECODERS)
"""The tasks this agent can run (those with a decoder); a manifest for another task is refused before
any download."""


def utc_now() -> datetime:
    """The current time, timezone-aware UTC: the agent's default clock."""
    return datetime.now(UTC)


class AgentConfig(BaseModel):
    """Everything one device needs; usually built by :func:`~edge_sync.agent.cli.main` from the command line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str = Field(description="this device's id, as registered on the server; used in window ids")
    server_url: str = Field(description="base URL of the sync server, e.g. http://10.0.0.5:8080")
    token: SecretStr = Field(description="the device's bearer token (never logged)")
    camera_dir: Path = Field(description="folder the line camera writes images into")
    state_dir: Path = Field(description="the agent's own folder: models, decisions, outbox")
    public_key_path: Path = Field(description="the platform's ed25519 public key (PEM) that signs manifests")
    poll_seconds: float = Field(10.0, gt=0, le=86_400, description="seconds between manifest polls and uploads")
    window_seconds: float = Field(60.0, gt=0, le=86_400, description="a metric window closes after this long")
    window_max_images: int = Field(
        200, ge=1, le=MAX_WINDOW_COUNT, description="... or once it has inspected this many images"
    )
    num_threads: int = Field(2, ge=1, le=256, description="CPU threads for inference")

    @field_validator("device_id")
    @classmethod
    def _safe_device_id(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError(
                f"device_id {value!r} must be 1-63 letters, digits, '_' or '-' starting with a letter or digit "
                "(the server's rule for device names; it becomes part of file names and window ids)"
            )
        return value

    @field_validator("server_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"server_url {value!r} must start with http:// or https://")
        return value.rstrip("/")


@dataclass(frozen=True)
class SyncOutcome:
    """What one sync did. ``model_version`` is the version this outcome is about: the one activated,
    already running, or refused; for ``no_deployment`` and ``server_unreachable`` the one still
    running (None when none is)."""

    status: SyncStatus
    model_version: str | None
    detail: str
