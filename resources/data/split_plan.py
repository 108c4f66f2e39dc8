"""The dataset version's split as a whole: grouping chosen, split made, checked against collapse.

A grouping that joins too much leaves a split too small to mean anything (a fixtured line once split
351 images 347/3/1 and reported AUROC 0.0 on one good and one defective test image). Here the split
is compared with the split the same seed makes with every file its own part: a split holding less
than half the images it would hold then, or missing a label (stratum) it would hold although that
label spans at least three groups, has *collapsed*. ``auto`` then falls back to no grouping and
says so in the plan (recorded in the lineage and the report); an explicit ``--group-by`` fails with
the cause and the ways out. Pure: no Dagster, no I/O.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from resources.data.grouping import GroupBy, GroupingError, check_part_ids, resolve_group_by
from resources.data.splitting import SPLITS, SplitSpec, grouped_stratified_split, keep_out_of_train, part_groups

__all__ = ["COLLAPSE_SHARE", "MIN_GROUPS_TO_EXPECT", "SplitCollapsed", "SplitPlan", "plan_split", "split_summary"]

COLLAPSE_SHARE = 0.5
"""A split with fewer than this share of the images an ungrouped split would give it has collapsed."""
MIN_GROUPS_TO_EXPECT = 3
"""A label spread over at least this many groups is expected wherever an ungrouped split puts it."""


class SplitCollapsed(GroupingError):
    """The grouping leaves a split too small or without a label; the message says why and what to do."""


@dataclass(frozen=True)
class SplitPlan:
    split: pd.DataFrame
    """The items with ``group_id`` and ``split`` (stratum column dropped)."""
    spec: SplitSpec
    """The spec the split was made with (``group_by`` resolved)."""
    requested: str
    reason: str
    fallback: str | None = None
    """Why ``auto`` fell back to no grouping, if it did."""
    look_alike_images: int = 0
    summary: dict = field(default_factory=dict)

    def record(self) -> dict:
        """What the dataset version records: the choice, why, and what each split holds."""
        return {
            "requested": self.requested,
            "group_by": self.spec.group_by,
            "reason": self.reason,
            "fallback": self.fallback,
            "near_duplicate_max_distance": self.spec.near_duplicate_max_distance,
            "near_copy_max_neighbours": self.spec.near_copy_max_neighbours,
            "look_alike_images": self.look_alike_images,
            "largest_group": int(self.split.groupby("group_id").size().max()) if len(self.split) else 0,
            "splits": self.summary,
        }


def split_summary(split: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per split: images, groups, and effective parts (Kish's (sum m)^2 / sum m^2 of group sizes:
    the number of independent parts the split is worth when groups differ in size)."""
    from resources.reporting.intervals import effective_size

    groups = split["group_id"].to_numpy(dtype=np.int64)
    out: dict[str, dict[str, float]] = {}
    for name in SPLITS:
        mask = (split["split"] == name).to_numpy()
        n_groups, effective = effective_size(groups, mask)
        out[name] = {"images": int(mask.sum()), "groups": n_groups, "effective_parts": round(effective, 1)}
    return out


def _split(items: pd.DataFrame, spec: SplitSpec, train_labels: frozenset[str] | None) -> pd.DataFrame:
    split = grouped_stratified_split(items, spec)
    if train_labels is not None:  # e.g. anomaly detection trains on good parts only
        split = keep_out_of_train(split, train_labels, spec.seed)
    return split


def _shortfalls(split: pd.DataFrame, ungrouped: pd.DataFrame) -> list[str]:
    """How ``split`` falls short of the ungrouped split of the same items and seed."""
    problems = []
    for name in SPLITS:
        have, could = int((split["split"] == name).sum()), int((ungrouped["split"] == name).sum())
        if have < COLLAPSE_SHARE * could:
            problems.append(f"{name} holds {have} image(s) where an ungrouped split holds {could}")
    key = "stratum" if "stratum" in split.columns else "label"
    for stratum in sorted(split[key].astype(str).unique()):
        rows = split[split[key].astype(str) == stratum]
        if rows["group_id"].nunique() < MIN_GROUPS_TO_EXPECT:
            continue  # one or two parts cannot be everywhere: the split warns about that itself
        expected = set(ungrouped.loc[ungrouped[key].astype(str) == stratum, "split"])
        for name in (s for s in SPLITS if s in expected - set(rows["split"])):
            problems.append(f"{name} holds no {stratum!r} image although {len(rows)} lie in {rows['group_id'].nunique()} groups")
    return problems


def plan_split(
    items: pd.DataFrame, spec: SplitSpec, requested: str, train_labels: frozenset[str] | None, where: str
) -> SplitPlan:
    """Choose the grouping for ``requested`` (``auto``/``metadata``/``phash``/``none``), split, and
    check the split against collapse.

    ``items`` has ``rel_path``, ``sha256``, ``label``, ``phash``, optional ``stratum`` and the part
    id columns it has; ``where`` names the data in messages. Raises :class:`GroupingError` for
    unusable part ids and :class:`SplitCollapsed` when an explicit grouping collapses a split.
    """
    mode, reason = resolve_group_by(requested, items)
    if mode is GroupBy.METADATA:
        check_part_ids(items, where=where, required=True)
    chosen = spec.model_copy(update={"group_by": mode.value})
    split = _split(items, chosen, train_labels)
    ungrouped = _split(items, chosen.model_copy(update={"group_by": GroupBy.NONE.value}), train_labels)
    look_alike = part_groups(items, chosen).look_alike_images if mode is not GroupBy.NONE else 0
    fallback = None
    problems = _shortfalls(split, ungrouped)
    if problems:
        largest = int(split.groupby("group_id").size().max())
        cause = (
            f"grouping by {mode.value} left the split without meaning: {'; '.join(problems)} "
            f"(its largest group holds {largest} of {len(split)} images)"
        )
        if requested != GroupBy.AUTO or mode is not GroupBy.PHASH:
            raise SplitCollapsed(
                f"{where}: {cause}. Ways out: give each image its part in metadata.csv (a part_id column) and use "
                "--group-by metadata; --group-by none if every image shows a different part; or more images"
            )
        fallback = (
            f"{cause}; fell back to no grouping (identical files only): near-copies are NOT kept out of test. "
            "Give each image its part in metadata.csv (a part_id column) to group by part"
        )
        chosen = chosen.model_copy(update={"group_by": GroupBy.NONE.value})
        split, look_alike = ungrouped, 0
    split = split.drop(columns=[c for c in ("stratum",) if c in split.columns])
    return SplitPlan(
        split=split,
        spec=chosen,
        requested=str(requested),
        reason=reason,
        fallback=fallback,
        look_alike_images=look_alike,
        summary=split_summary(split),
    )
