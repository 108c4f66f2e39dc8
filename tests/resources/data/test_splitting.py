"""Leakage-free split: determinism, part grouping, stratification, leakage re-check, dataset id."""

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from resources.data.splitting import SplitSpec, dataset_content_hash, grouped_stratified_split, leakage_violations


def flip_bits(value: int, bits: Sequence[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


def make_items(per_class: dict[str, int], seed: int = 0, twins: int = 0) -> pd.DataFrame:
    """Random 64-bit pHashes (mean distance 32, so no accidental near-duplicates), plus ``twins``
    near-duplicates per class (1-3 bits flipped from an existing item of the class)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, count in per_class.items():
        base = [int(h) for h in rng.integers(0, 2**64, size=count, dtype=np.uint64)]
        for i, h in enumerate(base):
            rows.append((f"{label}-{i:05d}", label, h))
        for t in range(twins):
            source = base[int(rng.integers(0, count))]
            bits = rng.choice(64, size=int(rng.integers(1, 4)), replace=False)
            rows.append((f"{label}-twin-{t:04d}", label, flip_bits(source, bits.tolist())))
    table = pd.DataFrame(rows, columns=["sha256", "label", "phash"])
    return table.assign(phash=table["phash"].astype("UInt64"))


# ----------------------------------------------------------------------------------------------- spec


def test_spec_defaults_and_bounds() -> None:
    spec = SplitSpec()
    assert spec.fractions() == (0.6, 0.2, 0.2) and spec.near_duplicate_max_distance == 4
    assert spec.group_by == "phash" and spec.near_copy_max_neighbours == 8
    with pytest.raises(ValidationError, match=r"must be 1, got 0.7 \+ 0.2 \+ 0.2 = 1.1"):
        SplitSpec(train_fraction=0.7)
    with pytest.raises(ValidationError, match="greater than 0"):
        SplitSpec(train_fraction=0.8, val_fraction=0.2, test_fraction=0.0)
    with pytest.raises(ValidationError, match="less than or equal to 16"):
        SplitSpec(near_duplicate_max_distance=17)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        SplitSpec(validation_fraction=0.2)
    with pytest.raises(ValidationError):
        spec.seed = 3  # frozen
    assert SplitSpec.model_fields["seed"].description


# ---------------------------------------------------------------------------------------------- split


def test_split_is_deterministic_and_row_order_independent() -> None:
    items = make_items({"good": 120, "scratch": 60}, twins=10)
    spec = SplitSpec(seed=7)
    first = grouped_stratified_split(items, spec)
    again = grouped_stratified_split(items, spec)
    pd.testing.assert_frame_equal(first, again)
    shuffled = grouped_stratified_split(items.sample(frac=1, random_state=3), spec)
    assert shuffled.sort_values("sha256")["split"].tolist() == first.sort_values("sha256")["split"].tolist()
    other_seed = grouped_stratified_split(items, SplitSpec(seed=8))
    assert other_seed["split"].tolist() != first["split"].tolist()


def test_split_keeps_input_rows_and_adds_columns() -> None:
    items = make_items({"good": 20, "dent": 20}).set_index(pd.Index(range(100, 140)))
    out = grouped_stratified_split(items, SplitSpec())
    assert list(out.index) == list(items.index)
    assert list(out.columns) == ["sha256", "label", "phash", "group_id", "split"]
    assert out["group_id"].dtype == np.int64 and set(out["split"]) == {"train", "val", "test"}


def test_split_has_no_leakage_for_injected_near_duplicates() -> None:
    items = make_items({"good": 200, "scratch": 80, "dent": 40}, twins=25, seed=1)
    spec = SplitSpec(near_duplicate_max_distance=4)
    out = grouped_stratified_split(items, spec)
    twins = out[out["sha256"].str.contains("twin")]
    assert len(twins) == 75
    # every twin shares a group with at least one original, and groups never straddle splits
    assert (out.groupby("group_id")["split"].nunique() == 1).all()
    assert out["group_id"].nunique() < len(out)
    assert leakage_violations(out, spec.near_duplicate_max_distance) == []


def test_split_stratifies_on_the_engines_key_when_given() -> None:
    """A task engine may stratify on something other than the label (e.g. defect vs good for
    anomaly): a ``stratum`` column is honoured, the label is kept as given."""
    items = make_items({"good": 300, "scratch": 4, "dent": 4, "crack": 4}, seed=4)
    by_label = grouped_stratified_split(items, SplitSpec(seed=1))
    strata = items.assign(stratum=["good" if label == "good" else "defect" for label in items["label"]])
    by_stratum = grouped_stratified_split(strata, SplitSpec(seed=1))
    # four per defect class split per label is 2/1/1 each; twelve defects split as one stratum is 7/3/2
    per_label = by_label[by_label["label"] != "good"]["split"].value_counts().to_dict()
    per_stratum = by_stratum[by_stratum["stratum"] == "defect"]["split"].value_counts().to_dict()
    assert per_label == {"train": 6, "val": 3, "test": 3}
    assert per_stratum == {"train": 7, "val": 3, "test": 2}
    assert by_stratum["label"].tolist() == items["label"].tolist()
    assert by_stratum["split"].tolist() != by_label["split"].tolist()


def test_identical_content_is_one_group_even_if_stored_phash_differs() -> None:
    items = pd.DataFrame(
        {"sha256": ["same", "same", "x", "y", "z"], "label": ["good"] * 5, "phash": [1, 2**63, 5, 2**40, 2**50]}
    )
    out = grouped_stratified_split(items, SplitSpec(near_duplicate_max_distance=0))
    assert out.loc[0, "group_id"] == out.loc[1, "group_id"]
    assert out.loc[0, "split"] == out.loc[1, "split"]


def test_fractions_honoured_per_class() -> None:
    items = make_items({"good": 400, "scratch": 320, "dent": 300}, twins=30, seed=2)
    out = grouped_stratified_split(items, SplitSpec(train_fraction=0.7, val_fraction=0.15, test_fraction=0.15))
    for label, group in out.groupby("label"):
        shares = group["split"].value_counts(normalize=True)
        assert abs(shares["train"] - 0.7) < 0.03, (label, shares.to_dict())
        assert abs(shares["val"] - 0.15) < 0.03, (label, shares.to_dict())
        assert abs(shares["test"] - 0.15) < 0.03, (label, shares.to_dict())


def test_small_classes_reach_every_split() -> None:
    items = make_items({"good": 100, "crack": 3, "dent": 4})
    out = grouped_stratified_split(items, SplitSpec())
    for label in ("crack", "dent"):
        assert set(out.loc[out["label"] == label, "split"]) == {"train", "val", "test"}


def test_group_goes_by_majority_label() -> None:
    base = 0x0F0F0F0F0F0F0F0F
    items = pd.DataFrame(
        {
            "sha256": ["a", "b", "c"],
            "label": ["dent", "dent", "good"],
            "phash": [base, flip_bits(base, [1]), flip_bits(base, [2])],
        }
    )
    out = grouped_stratified_split(items, SplitSpec())
    assert out["group_id"].nunique() == 1 and out["split"].nunique() == 1


def test_split_accepts_python_ints_and_signed_int64() -> None:
    items = make_items({"good": 30, "dent": 30})
    as_int = items.assign(phash=[int(h) for h in items["phash"]])
    signed = items.assign(phash=np.array([int(h) for h in items["phash"]], dtype=np.uint64).view(np.int64))
    expected = grouped_stratified_split(items, SplitSpec())["split"].tolist()
    assert grouped_stratified_split(as_int.astype({"phash": object}), SplitSpec())["split"].tolist() == expected
    assert grouped_stratified_split(signed, SplitSpec())["split"].tolist() == expected


def test_split_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"missing column\(s\) \['phash'\]"):
        grouped_stratified_split(pd.DataFrame({"sha256": ["a"], "label": ["good"]}), SplitSpec())
    with pytest.raises(ValueError, match="not an integer"):
        grouped_stratified_split(pd.DataFrame({"sha256": ["a"], "label": ["g"], "phash": [1.5]}), SplitSpec())
    with pytest.raises(ValueError, match="'label' has 1 missing value"):
        grouped_stratified_split(pd.DataFrame({"sha256": ["a"], "label": [None], "phash": [1]}), SplitSpec())


def test_images_hashing_alike_are_not_chained_into_one_group() -> None:
    """A fixtured line: 150 different parts share a hash, 60 are a bit off it. The transitive rule put
    them all in one group (a split of 208/2/0); near-copies are judged where they stand out."""
    base = 0x0F0F_F0F0_3C3C_C3C3
    hashes = [base] * 150 + [flip_bits(base, [i % 64, (i * 7 + 3) % 64]) for i in range(60)]
    items = pd.DataFrame({"sha256": [f"s{i:03d}" for i in range(210)], "label": ["good"] * 210, "phash": hashes})
    old = grouped_stratified_split(items, SplitSpec(near_copy_max_neighbours=1_000_000))
    assert old["group_id"].nunique() == 1
    out = grouped_stratified_split(items, SplitSpec())
    assert out["group_id"].value_counts().max() <= 9
    shares = out["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.6) < 0.05 and abs(shares["test"] - 0.2) < 0.05, shares.to_dict()


def test_metadata_grouping_keeps_a_parts_images_together_whatever_their_hashes() -> None:
    items = make_items({"good": 40, "dent": 20}, seed=3)
    items = items.assign(part_id=[f"p{i // 2}" for i in range(len(items))])  # two shots a part, unrelated hashes
    by_hash = grouped_stratified_split(items, SplitSpec())
    assert (by_hash.groupby("part_id")["split"].nunique() > 1).any()
    by_part = grouped_stratified_split(items, SplitSpec(group_by="metadata"))
    assert (by_part.groupby("part_id")["split"].nunique() == 1).all()
    assert by_part["group_id"].nunique() == 30
    with pytest.raises(ValueError, match="needs a part_id or capture_id column"):
        grouped_stratified_split(items.drop(columns=["part_id"]), SplitSpec(group_by="metadata"))


def test_group_by_none_keeps_only_identical_files_together() -> None:
    items = make_items({"good": 50}, twins=10, seed=6)
    items = pd.concat([items, items.iloc[[0]]], ignore_index=True)  # the same file twice
    out = grouped_stratified_split(items, SplitSpec(group_by="none"))
    assert out["group_id"].nunique() == len(items) - 1
    assert out.loc[0, "group_id"] == out.loc[len(items) - 1, "group_id"]


# -------------------------------------------------------------------------------------------- leakage


def test_leakage_violations_finds_shared_content_and_near_duplicates() -> None:
    base = 0x123456789ABCDEF0
    split = pd.DataFrame(
        {
            "sha256": ["a", "a", "b", "c", "d"],
            "split": ["train", "test", "train", "val", "test"],
            "phash": pd.array([base, base, 2**60, flip_bits(2**60, [0, 5, 9]), 7], dtype="UInt64"),
        }
    )
    assert leakage_violations(split, max_distance=3) == [
        {"sha256_a": "b", "sha256_b": "c", "split_a": "train", "split_b": "val", "distance": 3},
        {"sha256_a": "a", "sha256_b": "a", "split_a": "train", "split_b": "test", "distance": 0},
    ]  # sorted by split pair (train/val, train/test, val/test), then hashes
    assert [v["sha256_a"] for v in leakage_violations(split, max_distance=2)] == ["a"]


def test_leakage_violations_scales_to_thousands() -> None:
    items = make_items({"good": 2500, "dent": 2500}, seed=5)
    split = items.assign(split=np.resize(np.array(["train", "train", "train", "val", "test"]), len(items)))
    assert leakage_violations(split, max_distance=4) == []
    with pytest.raises(ValueError, match="between 0 and 64"):
        leakage_violations(split, max_distance=65)


# ----------------------------------------------------------------------------------------------- hash


def test_content_hash_is_order_independent_and_sensitive() -> None:
    items = make_items({"good": 30, "dent": 30})
    spec = SplitSpec()
    split = grouped_stratified_split(items, spec)
    digest = dataset_content_hash(split, spec, {"classes": "good,dent"})
    assert len(digest) == 64
    assert dataset_content_hash(split.sample(frac=1, random_state=1), spec, {"classes": "good,dent"}) == digest
    relabelled = split.copy()
    relabelled.loc[relabelled.index[0], "label"] = "dent" if relabelled.iloc[0]["label"] == "good" else "good"
    assert dataset_content_hash(relabelled, spec, {"classes": "good,dent"}) != digest
    moved = split.copy()
    moved.loc[moved.index[0], "split"] = "test" if moved.iloc[0]["split"] != "test" else "train"
    assert dataset_content_hash(moved, spec, {"classes": "good,dent"}) != digest
    assert dataset_content_hash(split, SplitSpec(seed=1), {"classes": "good,dent"}) != digest
    assert dataset_content_hash(split, spec, {"classes": "good,dent,crack"}) != digest
    assert dataset_content_hash(split, spec) != digest
    with pytest.raises(TypeError, match="extra must map str to str"):
        dataset_content_hash(split, spec, {"classes": 3})  # type: ignore[dict-item]


def test_keep_out_of_train_moves_whole_groups_to_val_and_test_alternately() -> None:
    import pandas as pd

    from resources.data.splitting import keep_out_of_train

    split = pd.DataFrame(
        {
            "sha256": [f"s{i}" for i in range(8)],
            "label": ["good", "good", "crack", "crack", "crack", "crack", "dent", "good"],
            "group_id": [0, 1, 2, 3, 4, 4, 5, 6],  # 4 holds two near-duplicate cracks
            "split": ["train", "val", "train", "train", "train", "train", "train", "test"],
        }
    )
    out = keep_out_of_train(split, frozenset({"good"}), seed=0)
    assert set(out.loc[out["split"] == "train", "label"]) == {"good"}
    assert out.loc[out["group_id"] == 4, "split"].nunique() == 1  # a group moves whole
    cracks = out[(out["label"] == "crack")].drop_duplicates("group_id")["split"]
    assert sorted(cracks) == ["test", "val", "val"]  # alternating, val first
    assert out.loc[out["label"] == "dent", "split"].item() == "val"
    assert out.loc[[0, 1, 7], "split"].tolist() == ["train", "val", "test"]  # the rest untouched
    assert keep_out_of_train(split, frozenset({"good"}), seed=0).equals(out)  # seeded


def test_a_file_listed_twice_counts_once_when_closeness_is_judged() -> None:
    """Grouping and the leakage check judge near-copies among distinct files alike, so a fresh split has
    no violation even when one file is listed several times."""
    base = 0x0F0F_F0F0_3C3C_C3C3
    rows = [("same", base)] * 3 + [("near", base ^ 1)] + [(f"far{i}", base ^ (0xFFFF << (4 * i % 48))) for i in range(36)]
    items = pd.DataFrame({"sha256": [r[0] for r in rows], "label": ["good"] * len(rows), "phash": [r[1] for r in rows]})
    for seed in range(20):
        spec = SplitSpec(seed=seed, near_copy_max_neighbours=1)
        out = grouped_stratified_split(items, spec)
        assert leakage_violations(out, 4, 1) == [], seed
