"""Near-copies by perceptual hash: pairs that stand out are linked, a line of look-alikes is not chained."""

import numpy as np
import pytest

from resources.data.near_copies import near_copy_pairs


def _pairs(hashes: list[int], distance: int = 4, neighbours: int | None = 8) -> set[tuple[int, int]]:
    found = near_copy_pairs(np.array(hashes, dtype=np.uint64), distance, neighbours)
    return set(zip(found.first.tolist(), found.second.tolist()))


def test_an_isolated_pair_within_the_distance_is_a_near_copy() -> None:
    rng = np.random.default_rng(0)
    hashes = [int(h) for h in rng.integers(0, 2**63, 50, dtype=np.uint64)]  # ~32 bits apart: no pairs
    hashes.append(hashes[7] ^ 0b101)  # a re-saved copy of item 7: 2 bits off
    hashes.append(hashes[9])  # an identical hash: the same picture
    assert _pairs(hashes) == {(7, 50), (9, 51)}
    distances = near_copy_pairs(np.array(hashes, dtype=np.uint64), 4, 8).distance.tolist()
    assert sorted(distances) == [0, 2]


def test_many_images_hashing_alike_are_not_near_copies_of_each_other() -> None:
    """A fixtured line: a hundred different parts share one hash, dozens are a bit off it. Linking
    them chains the whole line into one group; the rule links none of them."""
    base = 0x0F0F_F0F0_3C3C_C3C3
    hashes = [base] * 100 + [base ^ (1 << bit) for bit in range(30)]
    found = near_copy_pairs(np.array(hashes, dtype=np.uint64), 4, 8)
    assert len(found) == 0
    assert found.crowded == 130  # every one of them has look-alikes, none is taken for a copy


def test_a_copy_among_look_alikes_is_found_where_it_stands_out() -> None:
    base = 0xAAAA_AAAA_AAAA_AAAA
    crowd = [base] * 40
    far = base ^ 0xFFFF_0000_0000_0000  # a defect changes the picture: 16 bits away from the crowd
    hashes = [*crowd, far, far ^ 1]  # ... and its re-saved copy
    assert _pairs(hashes) == {(40, 41)}


def test_ties_are_counted_so_a_burst_larger_than_the_limit_is_not_linked() -> None:
    base = 0x1234_5678_9ABC_DEF0
    assert _pairs([base] * 9, neighbours=8) == {(a, b) for a in range(9) for b in range(a + 1, 9)}
    assert _pairs([base] * 10, neighbours=8) == set()  # 9 others as close: not a copy of any one of them


def test_no_limit_links_every_pair_within_the_distance() -> None:
    base = 0x0F0F_F0F0_3C3C_C3C3
    hashes = [base] * 20
    assert len(_pairs(hashes, neighbours=None)) == 20 * 19 // 2


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 64"):
        near_copy_pairs(np.array([1], dtype=np.uint64), 65, 8)
    with pytest.raises(ValueError, match="0 or more"):
        near_copy_pairs(np.array([1], dtype=np.uint64), 4, -1)
    assert len(near_copy_pairs(np.array([], dtype=np.uint64), 4, 8)) == 0
