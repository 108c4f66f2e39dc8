"""What a split's rows tell the report about near-duplicate groups."""

import numpy as np
import pandas as pd

from mfg_assets.datasets import split_groups


def test_split_groups_are_the_rows_group_ids() -> None:
    rows = pd.DataFrame({"sha256": ["a", "b", "c"], "group_id": [4, 4, 7]})
    assert split_groups(rows).tolist() == [4, 4, 7]
    assert split_groups(rows).dtype == np.int64


def test_rows_without_groups_give_none_so_intervals_count_images() -> None:
    assert split_groups(pd.DataFrame({"sha256": ["a"]})) is None
    assert split_groups(pd.DataFrame({"sha256": ["a", "b"], "group_id": [1, None]})) is None
