"""Part ids from metadata.csv: which grouping is used, and the ids that cannot group are refused by name."""

import pandas as pd
import pytest

from resources.data.grouping import GroupBy, GroupingError, check_part_ids, component_ids, resolve_group_by, same_value_edges


def _frame(part_ids: list[str], labels: list[str] | None = None) -> pd.DataFrame:
    n = len(part_ids)
    return pd.DataFrame(
        {"rel_path": [f"img/{i:02d}.png" for i in range(n)], "label": labels or ["good"] * n, "part_id": part_ids}
    )


def test_auto_uses_part_ids_where_they_exist_and_phash_otherwise() -> None:
    assert resolve_group_by("auto", _frame(["p1", "p1", "p2"]))[0] is GroupBy.METADATA
    # batches landed before their metadata.csv had ids: all images are grouped alike, and the reason says why
    mixed, why = resolve_group_by("auto", _frame(["p1", "", "p2"]))
    assert mixed is GroupBy.PHASH and "only some images have a part id" in why
    assert resolve_group_by("auto", _frame(["", "", ""]))[0] is GroupBy.PHASH
    assert resolve_group_by("auto", pd.DataFrame({"rel_path": ["a"], "label": ["good"]}))[0] is GroupBy.PHASH
    assert resolve_group_by("none", _frame(["p1"])) == (GroupBy.NONE, "--group-by none as asked")
    with pytest.raises(ValueError):
        resolve_group_by("parts", _frame(["p1"]))


def test_a_part_id_missing_for_some_images_is_refused_with_their_names() -> None:
    with pytest.raises(GroupingError, match=r"gives part_id for 2 image\(s\) but not for 1 \(img/02.png\)"):
        check_part_ids(_frame(["p1", "p2", " "]), where="metadata.csv", required=False)


def test_one_part_with_two_labels_is_refused_with_its_images() -> None:
    frame = _frame(["p1", "p1", "p2"], ["good", "scratch", "good"])
    with pytest.raises(GroupingError, match=r"part_id 'p1': img/00.png \(good\), img/01.png \(scratch\)"):
        check_part_ids(frame, where="metadata.csv", required=True)


def test_group_by_metadata_without_ids_says_what_to_add() -> None:
    frame = pd.DataFrame({"rel_path": ["a.png"], "label": ["good"]})
    with pytest.raises(GroupingError, match="needs a part_id"):
        check_part_ids(frame, where="metadata.csv", required=True)
    check_part_ids(frame, where="metadata.csv", required=False)  # auto: no ids, nothing to check


def test_components_join_equal_values_and_number_by_first_item() -> None:
    edges = [same_value_edges(["a", "b", "a", "", "c", "b"]), same_value_edges(["", "", "", "", "x", "x"])]
    assert component_ids(6, edges).tolist() == [0, 1, 0, 2, 1, 1]
    assert component_ids(0, []).tolist() == []
