"""Every handle an asset hands on, kept by id, so a later step can use the one it names, not the latest.

Dagster's IO manager keeps one value per asset and partition: the latest materialisation. A registered
model names the dataset version, validation report and export it was registered with, and after a
later run of the variant whose model was refused (its report and dataset are newer, nothing newer is
registered) those are no longer the latest. The deployment asset reads them here, by id, so it
publishes the registered model with its own threshold, classes and baselines. Rows are keyed by id: a
rerun of the same content rewrites its row instead of adding one.
"""

import json
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel

from resources.lineage import LineageStore

__all__ = ["HANDLES", "load_handle", "store_handle"]

HANDLES = "handles"

H = TypeVar("H", bound=BaseModel)


def store_handle(lineage: LineageStore, handle: BaseModel, partition: str) -> None:
    """Keep ``handle`` (which has an ``id``) in the ``handles`` table of the lineage store."""
    handle_id = str(getattr(handle, "id"))
    lineage.append_table(
        HANDLES,
        [
            {
                "id": handle_id,
                "kind": type(handle).__name__,
                "partition": partition,
                "handle_json": handle.model_dump_json(),
                "stored_at": datetime.now(UTC).isoformat(),
            }
        ],
        prefix=partition,
        key=f"{type(handle).__name__}:{handle_id}",
    )


def load_handle(lineage: LineageStore, kind: type[H], handle_id: str) -> H | None:
    """The stored ``kind`` handle with ``handle_id``, or None when none was stored (a run from before
    handles were kept, or an id from another ``MFG_HOME``)."""
    rows = lineage.read_table(HANDLES, "id = ? AND kind = ?", [handle_id, kind.__name__])
    if rows.empty:
        return None
    return kind.model_validate(json.loads(rows["handle_json"].iloc[-1]))
