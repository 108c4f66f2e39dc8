"""Leakage-free train/val/test split and the content-addressed dataset id.

Production-line images come in near-identical runs (the same part photographed twice, a camera that
fires on a still conveyor). If one shot lands in train and its twin in test, test accuracy measures
memory, not generalisation. So images are first grouped into parts (:func:`part_groups`: part ids from
``metadata.csv``, near-copies by perceptual hash where they stand out, identical files; see
:mod:`resources.data.grouping`), and whole groups are assigned to one split, stratified by each
group's majority label so every class appears in every split when it can.

Near-copies are linked only where their closeness stands out: on a fixtured line every part hashes
alike, and the transitive rule this module once used put 333 of 352 parts in one group and left a test
split of two images (:mod:`resources.data.near_copies` says how closeness is judged instead). Groups
are still the connected components of those links, so a slowly drifting run of frames, each close to
the next, can chain; :mod:`resources.data.split_plan` catches a group big enough to collapse a split.

The split is a pure function of the items and the ``SplitSpec``: same input, same output, whatever the
row order, so a dataset version can be rebuilt from its id. ``leakage_violations`` re-checks a split
independently of how it was made, and ``dataset_content_hash`` gives the id.
"""

import hashlib
import json
import logging
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from resources.data.grouping import PART_COLUMNS, GroupBy, component_ids, same_value_edges
from resources.data.near_copies import near_copy_pairs

__all__ = [
    "SPLITS",
    "PartGroups",
    "SplitSpec",
    "dataset_content_hash",
    "grouped_stratified_split",
    "keep_out_of_train",
    "leakage_violations",
    "part_groups",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_HASH_BITS = 64
_MASK = (1 << _HASH_BITS) - 1


class SplitSpec(BaseModel):
    """How a dataset version is split; part of the dataset's content hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train_fraction: float = Field(0.6, gt=0, lt=1, description="share of images for training")
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of images for validation (model selection, thresholds)"
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of images held out for the release report"
    )
    seed: int = Field(0, ge=0, description="seed of the group shuffle; change it for another split")
    near_duplicate_max_distance: int = Field(
        4,
        ge=0,
        le=16,
        description=(
            "largest 64-bit pHash Hamming distance at which two images count as near-duplicates and "
            "must share a split; 0 groups only identical hashes"
        ),
    )
    near_copy_max_neighbours: int = Field(
        8,
        ge=0,
        le=1_000_000,
        description=(
            "two images within near_duplicate_max_distance are near-copies only when neither has more than this "
            "many other images as close: on a line where many parts hash alike, closeness says nothing"
        ),
    )
    group_by: Literal["metadata", "phash", "none"] = Field(
        "phash",
        description=(
            "what keeps images together besides identical files: metadata (part_id / capture_id from "
            "metadata.csv), phash (near-copies) or none"
        ),
    )

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> "SplitSpec":
        total = self.train_fraction + self.val_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train_fraction + val_fraction + test_fraction must be 1, got "
                f"{self.train_fraction} + {self.val_fraction} + {self.test_fraction} = {total:g}; "
                f"adjust them, e.g. 0.6/0.2/0.2"
            )
        return self

    def fractions(self) -> tuple[float, float, float]:
        """(train, val, test), in the order of ``SPLITS``."""
        return (self.train_fraction, self.val_fraction, self.test_fraction)


def _require_columns(table: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{what}: the table is missing column(s) {missing} (it has {list(table.columns)}); "
            f"it needs {list(columns)}"
        )
    for column in columns:
        nulls = table[column].isna()
        if nulls.any():
            first = table.loc[nulls].index[:3].tolist()
            raise ValueError(
                f"{what}: column {column!r} has {int(nulls.sum())} missing value(s) (first rows: "
                f"{first}); drop or fix those rows before splitting"
            )


def _phash_array(values: pd.Series, what: str) -> np.ndarray:
    """64-bit pHashes as ``uint64``, from pandas ``UInt64``, numpy integers or Python ints.

    Signed 64-bit values are accepted as two's complement, because a pHash stored in a DuckDB
    BIGINT or a Parquet int64 column comes back negative when its top bit is set. Floats are
    refused: a float64 cannot hold 64 bits, so it has already lost hash bits.
    """
    out = np.empty(len(values), dtype=np.uint64)
    for position, value in enumerate(values.tolist()):
        try:
            number = operator.index(value)
        except TypeError as exc:
            raise ValueError(
                f"{what}: phash at row {values.index[position]!r} is {value!r} "
                f"({type(value).__name__}), not an integer; store pHashes as UInt64 or Python ints"
            ) from exc
        if not -(1 << 63) <= number <= _MASK:
            raise ValueError(
                f"{what}: phash at row {values.index[position]!r} is {number}, outside 64 bits; "
                f"compute it with resources.data.images (64-bit pHash)"
            )
        out[position] = number & _MASK
    return out


@dataclass(frozen=True)
class PartGroups:
    """Each item's part group (``group_id``, numbered by first item) and how many items have
    look-alikes within the pHash distance that were not taken for copies (``look_alike_images``)."""

    group_id: np.ndarray
    look_alike_images: int


def part_groups(items: pd.DataFrame, spec: "SplitSpec") -> PartGroups:
    """Group items into parts by ``spec.group_by``, in the items' order (callers pass a canonical
    order). Identical files (``sha256``) always share a group; ``phash`` and ``metadata`` add
    near-copies; ``metadata`` adds the ``part_id`` / ``capture_id`` columns, which it requires
    (checked with names by :func:`resources.data.grouping.check_part_ids` first)."""
    what = "part_groups"
    n = len(items)
    edges = [same_value_edges(items["sha256"].astype(str).tolist())]
    look_alike = 0
    if spec.group_by == GroupBy.PHASH:
        # Judged among distinct files, as leakage_violations judges them: a file listed twice is one image.
        first_rows = np.unique(items["sha256"].astype(str).to_numpy(), return_index=True)[1]
        first_rows.sort()
        pairs = near_copy_pairs(
            _phash_array(items["phash"].iloc[first_rows], what), spec.near_duplicate_max_distance, spec.near_copy_max_neighbours
        )
        edges.append((first_rows[pairs.first], first_rows[pairs.second]))
        look_alike = pairs.crowded
    if spec.group_by == GroupBy.METADATA:
        columns = [c for c in PART_COLUMNS if c in items.columns]
        if not columns:
            raise ValueError(
                f"{what}: group_by metadata needs a {' or '.join(PART_COLUMNS)} column; the items have "
                f"{list(items.columns)}"
            )
        for column in columns:
            values = items[column].fillna("").astype(str).str.strip().tolist()
            edges.append(same_value_edges(values))
    return PartGroups(component_ids(n, edges), look_alike)


def _stable_int(text: str) -> int:
    """A per-class seed component that does not depend on PYTHONHASHSEED or class order."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _assign_groups(
    group_ids: list[int], sizes: list[int], fractions: tuple[float, float, float], rng: np.random.Generator
) -> dict[int, str]:
    """Assign one class's groups to splits so item counts track the fractions.

    Groups are shuffled (seeded), then placed largest first into the split furthest below its target
    item count; large groups placed early leave the small ones to even out the totals. With three or
    more groups, the three smallest are first put one per split so every split sees the class.
    """
    total = sum(sizes)
    targets = np.array(fractions) * total
    counts = np.zeros(3)
    order = [group_ids[i] for i in rng.permutation(len(group_ids))]
    size_of = dict(zip(group_ids, sizes))
    order.sort(key=lambda g: -size_of[g])  # stable: ties keep the shuffled order
    assignment: dict[int, str] = {}
    if len(order) >= 3:
        # The smallest groups: test and val usually have the smaller targets.
        for split_index, group in zip((2, 1, 0), order[-3:]):
            assignment[group] = SPLITS[split_index]
            counts[split_index] += size_of[group]
        order = order[:-3]
    for group in order:
        split_index = int(np.argmax(targets - counts))
        assignment[group] = SPLITS[split_index]
        counts[split_index] += size_of[group]
    return assignment


def grouped_stratified_split(items: pd.DataFrame, spec: SplitSpec) -> pd.DataFrame:
    """Split items into train/val/test with each part's images kept together.

    ``items`` has ``sha256``, ``label`` and ``phash`` (64-bit pHash), the ``part_id`` / ``capture_id``
    columns when ``spec.group_by`` is ``metadata``, and optionally ``stratum``: the task engine's
    stratification key (``TaskEngine.stratify_key``; the label when absent). Returns a copy with
    ``group_id`` (part group, int; :func:`part_groups`) and ``split`` added, rows and index as given.
    Groups go whole to one split; each stratum (by the group's majority stratum, ties to the first in
    sort order) is split by its own seeded shuffle; a stratum with at least three groups lands in
    every split. The result does not depend on row order.
    """
    what = "grouped_stratified_split"
    _require_columns(items, ("sha256", "label", "phash"), what)
    out = items.copy()
    if items.empty:
        return out.assign(group_id=pd.Series([], dtype="int64"), split=pd.Series([], dtype=str))

    hashes = _phash_array(items["phash"], what)
    sha256 = items["sha256"].astype(str).to_numpy()
    labels = items["label"].astype(str).to_numpy()
    strata = (items["stratum"] if "stratum" in items.columns else items["label"]).astype(str).to_numpy()
    # A canonical row order makes the groups, and so the split, independent of the input order.
    canonical = np.lexsort((hashes, labels, sha256))
    group_canonical = part_groups(items.iloc[canonical], spec).group_id
    group_id = np.empty(len(items), dtype=np.int64)
    group_id[canonical] = group_canonical

    frame = pd.DataFrame({"group_id": group_id, "label": strata})
    votes = frame.groupby(["group_id", "label"]).size().rename("votes").reset_index()
    votes = votes.sort_values(["group_id", "votes", "label"], ascending=[True, False, True])
    majority = votes.drop_duplicates("group_id").set_index("group_id")["label"]
    sizes = frame.groupby("group_id").size()

    split_of_group: dict[int, str] = {}
    for label in sorted(majority.unique()):
        groups = sorted(int(g) for g in majority.index[majority == label])
        rng = np.random.default_rng([spec.seed, _stable_int(label)])
        split_of_group.update(
            _assign_groups(groups, [int(sizes[g]) for g in groups], spec.fractions(), rng)
        )
        if len(groups) < 3:
            logger.warning(
                "stratum %r has only %d near-duplicate group(s); it cannot appear in every split",
                label,
                len(groups),
            )

    out["group_id"] = group_id
    out["split"] = pd.Series([split_of_group[int(g)] for g in group_id], index=items.index, dtype=str)
    counts = out["split"].value_counts()
    logger.info(
        "split %d items in %d groups: %s",
        len(out),
        len(sizes),
        ", ".join(f"{s}={int(counts.get(s, 0))}" for s in SPLITS),
    )
    return out


def keep_out_of_train(split: pd.DataFrame, allowed: frozenset[str], seed: int) -> pd.DataFrame:
    """Move every near-duplicate group holding a label outside ``allowed`` from train to val or test.

    For a task that trains on some labels only (anomaly detection: good parts), the other labels
    belong to validation (the threshold) and test (the figures). Groups move whole, so no near-copy
    of a test image stays in train; per stratum they alternate val/test in a seeded order, val
    first, which keeps both splits stocked with every defect type that has two groups or more.
    """
    out = split.copy()
    barred = (out["split"] == "train") & ~out["label"].astype(str).isin(allowed)
    moving = sorted(set(out.loc[barred, "group_id"].astype(int)))
    if not moving:
        return out
    strata = out["stratum"] if "stratum" in out.columns else out["label"]
    # a group's stratum: that of its first barred row (a mixed group moves for its defect, not its good part)
    first_stratum = {int(g): str(strata[barred & (out["group_id"] == g)].iloc[0]) for g in moving}
    placed: dict[str, int] = {}
    target: dict[int, str] = {}
    for group in sorted(moving, key=lambda g: _stable_int(f"{seed}:{g}:{first_stratum[g]}")):
        stratum = first_stratum[group]
        target[group] = ("val", "test")[placed.get(stratum, 0) % 2]
        placed[stratum] = placed.get(stratum, 0) + 1
    rows = out["group_id"].astype(int).isin(target) & (out["split"] == "train")
    out.loc[rows, "split"] = [target[int(g)] for g in out.loc[rows, "group_id"]]
    return out


def _split_order(name: str) -> tuple[int, str]:
    return (SPLITS.index(name), name) if name in SPLITS else (len(SPLITS), name)


def leakage_violations(
    split: pd.DataFrame,
    max_distance: int,
    max_neighbours: int | None = None,
    *,
    near_copies: bool = True,
    by_part: bool = False,
) -> list[dict]:
    """Every way a split leaks: one content hash in two splits, two near-copies in different splits
    (pHash within ``max_distance`` bits, and neither with more than ``max_neighbours`` other images
    as close: :mod:`resources.data.near_copies`; ``None``: every pair within the distance; not
    checked with ``near_copies=False``, for a split grouped by identical files only), and with
    ``by_part`` one ``part_id`` / ``capture_id`` in two splits.

    Independent of ``grouped_stratified_split`` (it uses no groups), so it also catches a split that
    was edited by hand or produced by older code. Returns dicts with sha256_a, sha256_b, split_a,
    split_b, distance (``None`` for a shared part id, then also ``part``), sorted; an identical file
    is reported once per pair of splits with distance 0.
    """
    what = "leakage_violations"
    if not 0 <= max_distance <= _HASH_BITS:
        raise ValueError(f"{what}: max_distance is {max_distance}; it must be between 0 and 64 bits")
    _require_columns(split, ("sha256", "split", "phash"), what)
    table = pd.DataFrame(
        {
            "sha256": split["sha256"].astype(str).to_numpy(),
            "split": split["split"].astype(str).to_numpy(),
            "phash": _phash_array(split["phash"], what),
        }
    ).drop_duplicates()
    violations: list[dict] = []

    per_sha = table[["sha256", "split"]].drop_duplicates()
    for sha, group in per_sha.groupby("sha256", sort=True):
        names = sorted(group["split"], key=_split_order)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                violations.append(
                    {"sha256_a": sha, "sha256_b": sha, "split_a": a, "split_b": b, "distance": 0}
                )

    # Near-copies are judged among distinct files: a file listed in two splits is one image.
    files = table.drop_duplicates("sha256").reset_index(drop=True)
    splits_of = table.groupby("sha256")["split"].agg(lambda names: sorted(set(names), key=_split_order))
    pairs = near_copy_pairs(files["phash"].to_numpy() if near_copies else files["phash"].to_numpy()[:0], max_distance, max_neighbours)
    seen: set[tuple[str, str, str, str]] = set()
    for i, j, distance in zip(pairs.first.tolist(), pairs.second.tolist(), pairs.distance.tolist()):
        sha_i, sha_j = str(files.at[i, "sha256"]), str(files.at[j, "sha256"])
        for split_i in splits_of[sha_i]:
            for split_j in splits_of[sha_j]:
                if split_i == split_j:
                    continue
                (sa, na), (sb, nb) = sorted(((sha_i, split_i), (sha_j, split_j)), key=lambda x: _split_order(x[1]))
                key = (sa, sb, na, nb)
                if key not in seen:
                    seen.add(key)
                    violations.append({"sha256_a": sa, "sha256_b": sb, "split_a": na, "split_b": nb, "distance": distance})

    if by_part:
        violations += _part_violations(split)
    violations.sort(
        key=lambda v: (_split_order(v["split_a"]), _split_order(v["split_b"]), v["sha256_a"], v["sha256_b"])
    )
    if violations:
        logger.warning("%s: %d leakage violation(s) at max_distance %d", what, len(violations), max_distance)
    return violations


def _part_violations(split: pd.DataFrame) -> list[dict]:
    """One violation per part or capture id and pair of splits it appears in (first files named)."""
    found = []
    for column in (c for c in PART_COLUMNS if c in split.columns):
        ids = split[column].fillna("").astype(str).str.strip()
        rows = split.assign(_id=ids)[ids != ""]
        for value, group in rows.groupby("_id", sort=True):
            names = sorted(set(group["split"].astype(str)), key=_split_order)
            for i, a in enumerate(names):
                for b in names[i + 1 :]:
                    found.append(
                        {
                            "sha256_a": str(sorted(group.loc[group["split"] == a, "sha256"])[0]),
                            "sha256_b": str(sorted(group.loc[group["split"] == b, "sha256"])[0]),
                            "split_a": a,
                            "split_b": b,
                            "distance": None,
                            "part": f"{column} {value}",
                        }
                    )
    return found


def dataset_content_hash(
    split: pd.DataFrame, spec: SplitSpec, extra: Mapping[str, str] | None = None
) -> str:
    """The dataset version's id: SHA-256 over its sorted (sha256, label, split) rows, the spec and
    ``extra`` (e.g. the taxonomy or the code version).

    Sorting makes the id independent of row order, so the same dataset rebuilt anywhere gets the same
    id; any change of image, label, split or spec gives a new one. Rows are JSON-encoded so no label
    text can make two different tables hash alike.
    """
    what = "dataset_content_hash"
    _require_columns(split, ("sha256", "label", "split"), what)
    extra = dict(extra or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"{what}: extra must map str to str, got {key!r}: {value!r}; convert the values to "
                f"strings (e.g. json.dumps) first"
            )
    rows = sorted(
        zip(
            split["sha256"].astype(str).tolist(),
            split["label"].astype(str).tolist(),
            split["split"].astype(str).tolist(),
        )
    )
    digest = hashlib.sha256(b"mfg-vision dataset v1\n")
    for row in rows:
        digest.update(json.dumps(row, ensure_ascii=False).encode())
        digest.update(b"\n")
    digest.update(b"spec\n")
    digest.update(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode())
    digest.update(b"\nextra\n")
    digest.update(json.dumps(extra, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()
