"""Lineage: who produced what, from which inputs, with which code and parameters.

Every materialization appends one row (asset, partition, run id, code version, parameters, input
ids, output id, time) to the append-only ``lineage`` table, and item-level facts (which image hashes
and labels a dataset version holds) go to their own tables. ``trace`` walks the rows from a model
version back to every image hash and label, which is what ``mfgv lineage`` prints.
"""

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from resources.storage.code_version import code_version
from resources.settings import mfg_home
from resources.storage.warehouse import Warehouse
from resources.errors import MfgVisionError

__all__ = ["LineageStore", "LineageNode", "LineageNotFound"]


class LineageNotFound(MfgVisionError, LookupError):
    """No lineage row produced the requested id."""


class LineageNode:
    """One output id in the lineage tree, with the rows of its inputs."""

    def __init__(self, output_id: str, asset: str, row: Mapping[str, Any], inputs: list["LineageNode"]):
        self.output_id = output_id
        self.asset = asset
        self.row = row
        self.inputs = inputs


class LineageStore(dg.ConfigurableResource):
    """Lineage and platform tables in ``home`` (default ``MFG_HOME``)."""

    home: str = ""

    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve() if self.home else mfg_home()

    def warehouse(self) -> Warehouse:
        return Warehouse(self.home_path())

    def record(
        self,
        *,
        asset: str,
        partition: str | None,
        run_id: str,
        output_id: str,
        input_ids: Sequence[str],
        parameters: Mapping[str, Any],
        input_hashes: Mapping[str, str] | None = None,
    ) -> None:
        """Append one lineage row for a materialization."""
        row = {
            "asset": asset,
            "partition": partition or "",
            "run_id": run_id,
            "code_version": code_version(),
            "parameters": json.dumps(parameters, sort_keys=True, default=str),
            "input_ids": json.dumps(list(input_ids)),
            "input_hashes": json.dumps(dict(input_hashes or {}), sort_keys=True),
            "output_id": output_id,
            "recorded_at": datetime.now(UTC).isoformat(),
        }
        self.warehouse().append("lineage", [row], prefix=asset)

    def append_table(
        self, table: str, rows: pd.DataFrame | list[dict], *, prefix: str = "", key: str | None = None
    ) -> Path:
        """Append rows; with ``key`` a rerun of the same write replaces its file (``Warehouse.append``)."""
        return self.warehouse().append(table, rows, prefix=prefix, key=key)

    def read_table(self, table: str, where: str = "", params: list | None = None) -> pd.DataFrame:
        return self.warehouse().read(table, where, params)

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        return self.warehouse().query(sql, params)

    def producer(self, output_id: str) -> dict[str, Any]:
        """The latest lineage row that produced ``output_id``."""
        rows = self.read_table("lineage", "output_id = ?", [output_id])
        if rows.empty:
            raise LineageNotFound(
                f"no lineage row produced {output_id!r}; check the id (`mfgv models` lists model "
                "versions) and that MFG_HOME points at the platform's state folder"
            )
        return rows.sort_values("recorded_at").iloc[-1].to_dict()

    def trace(self, output_id: str) -> LineageNode:
        """The lineage tree from ``output_id`` back to the raw inputs."""
        rows = self.read_table("lineage")
        if rows.empty:
            raise LineageNotFound(f"the lineage table under {self.home_path()} is empty")
        latest = rows.sort_values("recorded_at").groupby("output_id").tail(1).set_index("output_id")
        return self._node(output_id, latest, seen=set())

    def _node(self, output_id: str, latest: pd.DataFrame, seen: set[str]) -> LineageNode:
        if output_id not in latest.index:
            raise LineageNotFound(f"no lineage row produced {output_id!r}")
        row = latest.loc[output_id].to_dict()
        seen = seen | {output_id}
        children = [
            self._node(child, latest, seen)
            for child in json.loads(row["input_ids"])
            if child not in seen and child in latest.index
        ]
        return LineageNode(output_id, row["asset"], row, children)
