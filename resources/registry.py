"""The model registry: versions, their provenance and their status.

Registry entries are append-only events in the ``model_registry`` table (a status change is a new
row), so the history of every version is kept for the audit trail. Version numbers are allocated
inside the warehouse lock, so two runs registering at once cannot get the same number, and
registering the same checkpoint twice returns the existing version instead of a new one.
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import BaseModel, ConfigDict

from resources.settings import mfg_home
from resources.storage.warehouse import Warehouse
from resources.errors import MfgVisionError

__all__ = ["ModelRegistry", "ModelStatus", "ModelVersion", "UnknownModelVersion"]


class ModelStatus(StrEnum):
    CANDIDATE = "candidate"
    APPROVED = "approved"
    DEPLOYED = "deployed"
    RETIRED = "retired"
    REJECTED = "rejected"


class UnknownModelVersion(MfgVisionError, LookupError):
    pass


class ModelVersion(BaseModel):
    """One registered model version, as stored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    line: str
    variant: str
    task: str
    status: ModelStatus
    checkpoint_sha256: str
    dataset_version: str
    metrics: dict[str, Any]
    parameters: dict[str, Any]
    artifacts: dict[str, Any]
    code_version: str
    registered_at: str


class ModelRegistry(dg.ConfigurableResource):
    """Registry tables in ``home`` (default ``MFG_HOME``)."""

    home: str = ""

    def _warehouse(self) -> Warehouse:
        return Warehouse(Path(self.home).expanduser().resolve() if self.home else mfg_home())

    def register(
        self,
        *,
        line: str,
        variant: str,
        task: str,
        checkpoint_sha256: str,
        dataset_version: str,
        metrics: Mapping[str, Any],
        parameters: Mapping[str, Any],
        artifacts: Mapping[str, Any],
        code_version: str,
    ) -> ModelVersion:
        """Register a candidate; idempotent for the same checkpoint of the same line/variant."""
        warehouse = self._warehouse()
        with warehouse.connect() as connection:
            existing = pd.DataFrame()
            if warehouse.has_table("model_registry"):
                existing = connection.execute(
                    "SELECT * FROM model_registry WHERE line = ? AND variant = ? ORDER BY registered_at",
                    [line, variant],
                ).fetchdf()
            if not existing.empty:
                same = existing[existing["checkpoint_sha256"] == checkpoint_sha256]
                if not same.empty:
                    return _to_version(same.iloc[-1].to_dict())
            number = existing["version"].nunique() + 1 if not existing.empty else 1
            row = {
                "version": f"{line}-{variant}-v{number}",
                "line": line,
                "variant": variant,
                "task": task,
                "status": ModelStatus.CANDIDATE.value,
                "checkpoint_sha256": checkpoint_sha256,
                "dataset_version": dataset_version,
                "metrics": json.dumps(dict(metrics), sort_keys=True, default=str),
                "parameters": json.dumps(dict(parameters), sort_keys=True, default=str),
                "artifacts": json.dumps(dict(artifacts), sort_keys=True, default=str),
                "code_version": code_version,
                "registered_at": datetime.now(UTC).isoformat(),
            }
            warehouse.append("model_registry", [row], prefix=row["version"])
        return _to_version(row)

    def expected_version(self, line: str, variant: str, checkpoint_sha256: str) -> str:
        """The version this checkpoint has, or the one ``register`` would give it now: what a report
        written before registration names the model by (a run registering meanwhile takes it first)."""
        rows = self._warehouse().read("model_registry", "line = ? AND variant = ?", [line, variant])
        if rows.empty:
            return f"{line}-{variant}-v1"
        same = rows[rows["checkpoint_sha256"] == checkpoint_sha256]
        if not same.empty:
            return str(same.sort_values("registered_at")["version"].iloc[-1])
        return f"{line}-{variant}-v{rows['version'].nunique() + 1}"

    def get(self, version: str) -> ModelVersion:
        rows = self._warehouse().read("model_registry", "version = ?", [version])
        if rows.empty:
            known = self.list_versions()
            hint = ", ".join(v.version for v in known[-5:]) or "none registered yet"
            raise UnknownModelVersion(f"model version {version!r} is not registered (latest: {hint})")
        return _to_version(rows.sort_values("registered_at").iloc[-1].to_dict())

    def list_versions(self, line: str | None = None, variant: str | None = None) -> list[ModelVersion]:
        rows = self._warehouse().read("model_registry")
        if rows.empty:
            return []
        if line:
            rows = rows[rows["line"] == line]
        if variant:
            rows = rows[rows["variant"] == variant]
        latest = rows.sort_values("registered_at").groupby("version").tail(1)
        return [_to_version(r) for r in latest.sort_values("registered_at").to_dict("records")]


def _to_version(row: Mapping[str, Any]) -> ModelVersion:
    decoded = dict(row)
    for key in ("metrics", "parameters", "artifacts"):
        if isinstance(decoded[key], str):
            decoded[key] = json.loads(decoded[key])
    decoded["registered_at"] = str(decoded["registered_at"])
    return ModelVersion(**decoded)
