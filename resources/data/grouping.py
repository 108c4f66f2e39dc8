"""Which images are one physical part (or one capture), so that a split never puts them on both sides.

Three sources, in the order a plant can trust them:

* **metadata**: a ``part_id`` (or ``serial``) and/or ``capture_id`` column in a batch's
  ``metadata.csv``. Images sharing an id are one part; the plant knows, nothing is guessed.
* **phash**: near-copies by perceptual hash (:mod:`resources.data.near_copies`): the same capture
  re-saved or resized, or a still conveyor's repeated frames, where they stand out from the line.
* identical files (the same sha256) are always one part, whatever the choice.

``group_by`` picks: ``metadata`` (the ids; no pHash links, which between look-alike parts would only
join parts the ids keep apart), ``phash``, ``none`` (identical files only), or ``auto``: metadata
where every image has an id, else phash (saying so when only some have one). The choice and why it was made are recorded with the dataset
version.
"""

from collections.abc import Sequence
from enum import StrEnum

import numpy as np
import pandas as pd

from resources.errors import MfgVisionError

__all__ = [
    "PART_COLUMNS",
    "GroupBy",
    "GroupingError",
    "check_part_ids",
    "component_ids",
    "every_image_has_a_part_id",
    "has_part_ids",
    "resolve_group_by",
    "same_value_edges",
]

PART_COLUMNS = ("part_id", "capture_id")
"""Columns of the image table (from ``metadata.csv``; ``serial`` is read as ``part_id``) that name
a part or a capture. Images sharing a value of either are one group."""


class GroupBy(StrEnum):
    AUTO = "auto"
    METADATA = "metadata"
    PHASH = "phash"
    NONE = "none"


class GroupingError(MfgVisionError, ValueError):
    """The part ids cannot group the images (missing, conflicting); the message names the files."""


def _filled(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame[column].fillna("").astype(str).str.strip() != ""


def has_part_ids(frame: pd.DataFrame) -> bool:
    """Whether any image carries a part or capture id."""
    return any(_filled(frame, column).any() for column in PART_COLUMNS)


def every_image_has_a_part_id(frame: pd.DataFrame) -> bool:
    """Whether one id column names the part (or capture) of every image, and no other is half filled."""
    present = [column for column in PART_COLUMNS if _filled(frame, column).any()]
    return bool(present) and all(_filled(frame, column).all() for column in present)


def _first(paths: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def check_part_ids(frame: pd.DataFrame, *, where: str, required: bool) -> None:
    """Refuse part ids that cannot group: a column present but empty for some images, or one part
    given two labels. ``frame`` has ``rel_path``, ``label`` and the id columns it has; ``where``
    names the data for the message. ``required`` (``--group-by metadata``): no id column at all is
    an error too."""
    present = [column for column in PART_COLUMNS if _filled(frame, column).any()]
    if not present:
        if required:
            raise GroupingError(
                f"{where}: --group-by metadata needs a part_id (or serial, or capture_id) column in metadata.csv "
                f"(header path,part_id,...), with a value for every image; add it, or use --group-by phash"
            )
        return
    for column in present:
        empty = ~_filled(frame, column)
        if empty.any():
            paths = sorted(frame.loc[empty, "rel_path"].astype(str))
            raise GroupingError(
                f"{where}: metadata.csv gives {column} for {int((~empty).sum())} image(s) but not for {len(paths)} "
                f"({_first(paths)}); give every image its {column} (or leave the column out, or use "
                f"--group-by phash to group by image similarity instead)"
            )
    for column in present:
        ids = frame[column].astype(str).str.strip()
        labels_per_id = frame.groupby(ids)["label"].nunique()
        conflicting = labels_per_id[labels_per_id > 1]
        if conflicting.empty:
            continue
        value = str(conflicting.index[0])
        rows = frame[ids == value].sort_values("rel_path")
        listed = ", ".join(f"{p} ({label})" for p, label in zip(rows["rel_path"].head(4), rows["label"].head(4)))
        raise GroupingError(
            f"{where}: {len(conflicting)} {column} value(s) carry more than one label, first {column} {value!r}: "
            f"{listed}; one part has one verdict: fix the label or the {column} in metadata.csv"
        )


def resolve_group_by(requested: str, frame: pd.DataFrame) -> tuple[GroupBy, str]:
    """The grouping to use and why, for ``requested`` (a :class:`GroupBy` value)."""
    choice = GroupBy(requested)
    if choice is not GroupBy.AUTO:
        return choice, f"--group-by {choice.value} as asked"
    if every_image_has_a_part_id(frame):
        return GroupBy.METADATA, "auto: metadata.csv names the part (or capture) of every image"
    if has_part_ids(frame):  # e.g. batches landed before their metadata.csv had ids: group all alike
        return GroupBy.PHASH, (
            "auto: only some images have a part id in metadata.csv (earlier batches without one?), so near-copies by "
            "perceptual hash; give every batch's images their part_id, or pass --group-by metadata to be told which lack one"
        )
    return GroupBy.PHASH, "auto: no part ids in metadata.csv, so near-copies by perceptual hash"


def component_ids(n: int, edges: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Connected components of ``n`` items joined by ``edges`` (pairs of index arrays), numbered
    0, 1, ... by each component's first item, so the result depends only on the item order."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.concatenate([np.arange(n), *(np.asarray(a, dtype=np.int64) for a, _ in edges)])
    second = np.concatenate([np.arange(n), *(np.asarray(b, dtype=np.int64) for _, b in edges)])
    graph = coo_matrix((np.ones(first.size, dtype=np.int8), (first, second)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first_index, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first_index.size, dtype=np.int64)
    rank[np.argsort(first_index, kind="stable")] = np.arange(first_index.size)
    return rank[inverse.reshape(-1)]


def same_value_edges(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining every item to the first item with the same non-empty value."""
    first_of: dict[str, int] = {}
    a, b = [], []
    for index, value in enumerate(values):
        if not value:
            continue
        if value in first_of:
            a.append(first_of[value])
            b.append(index)
        else:
            first_of[value] = index
    return np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)
