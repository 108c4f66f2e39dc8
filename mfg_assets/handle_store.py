"""Every handle an asset hands on, kept by id, so a later step can use the one it names, not the latest.

Dagster's IO manager keeps one value per asset and partition: the latest materialisation. A registered
model names the dataset version, validation report and export it was registered with, and after a
later run of the variant whose model was refused (its report and dataset are newer, nothing newer is
registered) those are no longer the latest. The deployment asset reads them here, by id, so it
publishes the registered model with its own threshold, classes and baselines. Rows are keyed by id: a
rerun of the same content rewrites its row instead of adding one.
"""

import json
import logging
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from resources.lineage import LineageStore

__all__ = ["HANDLES", "load_handle", "store_handle"]

HANDLES = "handles"

logger = logging.getLogger(__name__)

H = TypeVar("H", bound=BaseModel)


class _WithId(Protocol):
    id: str

    def model_dump_json(self) -> str: ...


def store_handle(lineage: LineageStore, handle: _WithId, partition: str) -> None:
    """Keep ``handle`` in the ``handles`` table of the lineage store, under ``partition``."""
    handle_id = handle.id
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


def load_handle(lineage: LineageStore, kind: type[H], handle_id: str, partition: str) -> H | None:
    """The ``kind`` handle with ``handle_id`` that ``partition`` stored last, or None when there is none
    this code can read: a run from before handles were kept, an id from another ``MFG_HOME``, or one
    stored by a code version whose handle had other fields (logged).

    The partition matters: a content id (a dataset version of the same images and labels) can be
    the same for two variants, and each variant's row is its own."""
    rows = lineage.read_table(HANDLES, "id = ? AND kind = ? AND partition = ?", [handle_id, kind.__name__, partition])
    if rows.empty:
        return None
    latest = rows.sort_values("stored_at").iloc[-1]
    try:
        return kind.model_validate(json.loads(latest["handle_json"]))
    except ValidationError as exc:
        logger.warning("stored %s %s of %s cannot be read by this code version: %s", kind.__name__, handle_id, partition, exc)
        return None
