"""Hold orders: the platform's signed word that a line's devices must run **no** model.

Rolling back a line's first canary leaves nothing to fall back to. Answering "nothing deployed"
(HTTP 204) would leave the device deciding with the model just rolled back, so the platform signs a
hold order instead, served in place of a manifest: a device that verifies it closes its window, stops
inspecting (images wait; the line passes parts to manual inspection) and reports that it holds, until
the platform deploys a model again. It is signed like a manifest, so nobody on the network can stop a
line with a forged one.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge_sync.contract.manifest import SCHEMA_VERSION, Ring
from edge_sync.contract.names import MODEL_VERSION, NAME

__all__ = ["HOLD_KIND", "HoldOrder", "is_hold_payload"]

HOLD_KIND = "hold"


class HoldOrder(BaseModel):
    """Run no model on ``line``'s ``ring`` until a deployment replaces this order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    kind: Literal["hold"] = HOLD_KIND
    order_id: str = Field(min_length=1, max_length=200, description="unique per order, e.g. line1-hold-20261202T1910")
    line: str = Field(pattern=NAME.pattern)
    ring: Ring = Ring.FLEET
    reason: str = Field(min_length=1, max_length=2000, description="why, for the operator and the audit trail")
    rolled_back_version: str | None = Field(None, description="the model the line must stop running")
    created_at: datetime

    @field_validator("rolled_back_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and not MODEL_VERSION.fullmatch(value):
            raise ValueError(f"rolled_back_version {value!r} is not a valid model version")
        return value


def is_hold_payload(payload: object) -> bool:
    """Whether a signed envelope's JSON is a hold order (else it is a deployment manifest)."""
    return isinstance(payload, dict) and payload.get("kind") == HOLD_KIND
