"""Near-copies by perceptual hash: pairs of images that stand out as copies of one capture.

Two images whose 64-bit pHashes differ by at most a few bits are the same picture re-saved, resized
or shot twice in a row, *unless* the whole line looks like that: on a fixtured line (one jig, one
pose, one light) hundreds of different parts hash within a bit or two of each other, often to the
very same value, and linking them transitively (a~b, b~c) once put 333 of 352 parts in one group
(BENCHMARKS.md, "Splits where every part looks alike: before and after"). So closeness counts only
where it is rare: a pair within ``max_distance`` bits is a near-copy when neither image has more than
``max_neighbours`` other images that close (ties counted). A re-shot part stands out against a
varied line; on a line where a hundred parts hash alike nothing stands out, pHash groups nothing,
and part ids (``metadata.csv``) are the way to keep one part's images together.

Distances are computed on the distinct hash values in row blocks (bounded memory), twice: once to
count each value's neighbours at every distance up to ``max_distance``, once to keep the pairs that
pass the rule, whose number is at most about ``values x max_neighbours``.
"""

from collections.abc import Iterator

import numpy as np

__all__ = ["NearCopyPairs", "near_copy_pairs"]

_HASH_BITS = 64
# Cells (row x column pairs) per distance block: bounds a block's memory to some tens of MB.
_BLOCK_CELLS = 4_000_000


class NearCopyPairs:
    """The near-copy pairs of a list of hashes, at the item level.

    ``first`` / ``second`` are item indices (``first < second``) and ``distance`` their pHash
    distance; ``crowded`` counts the items that have an image within the distance but no near-copy
    (too many images hash alike near them), which the split reports so a user knows pHash could not
    tell those parts apart.
    """

    def __init__(self, first: np.ndarray, second: np.ndarray, distance: np.ndarray, crowded: int) -> None:
        self.first, self.second, self.distance, self.crowded = first, second, distance, crowded

    def __len__(self) -> int:
        return int(self.first.size)


def _blocks(n: int) -> Iterator[tuple[int, int]]:
    block = max(1, min(n, _BLOCK_CELLS // max(n, 1)))
    for start in range(0, n, block):
        yield start, min(n, start + block)


def _neighbour_counts(values: np.ndarray, multiplicity: np.ndarray, max_distance: int) -> np.ndarray:
    """``counts[u, d]``: items whose hash is within ``d`` bits of value ``u`` (its own included)."""
    counts = np.zeros((values.size, max_distance + 1), dtype=np.int64)
    for start, stop in _blocks(values.size):
        distances = np.bitwise_count(values[start:stop, None] ^ values[None, :])
        for d in range(max_distance + 1):
            counts[start:stop, d] = (distances <= d).astype(np.int64) @ multiplicity
    return counts


def near_copy_pairs(hashes: np.ndarray, max_distance: int, max_neighbours: int | None) -> NearCopyPairs:
    """Every near-copy pair of ``hashes`` (uint64, one per item) by the rule in the module docstring.

    ``max_neighbours=None`` links every pair within ``max_distance`` (the transitive rule of old,
    kept for leakage checks of splits made by it). Items with equal hashes are near-copies of
    each other when no more than ``max_neighbours + 1`` items share the value.
    """
    if not 0 <= max_distance <= _HASH_BITS:
        raise ValueError(f"max_distance is {max_distance}; it must be between 0 and {_HASH_BITS} bits")
    if max_neighbours is not None and max_neighbours < 0:
        raise ValueError(f"max_neighbours is {max_neighbours}; it must be 0 or more (None: no limit)")
    hashes = np.asarray(hashes, dtype=np.uint64)
    empty = np.zeros(0, dtype=np.int64)
    if hashes.size == 0:
        return NearCopyPairs(empty, empty, empty, 0)
    values, item_value, multiplicity = np.unique(hashes, return_inverse=True, return_counts=True)
    item_value = item_value.reshape(-1)
    limit = np.iinfo(np.int64).max if max_neighbours is None else max_neighbours
    counts = _neighbour_counts(values, multiplicity.astype(np.int64), max_distance) - 1  # others, not itself

    value_pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start, stop in _blocks(values.size):
        distances = np.bitwise_count(values[start:stop, None] ^ values[None, :]).astype(np.int64)
        rows, cols = np.nonzero(distances <= max_distance)
        rows_global = rows + start
        keep = cols > rows_global  # each pair of distinct values once
        rows_global, cols, d = rows_global[keep], cols[keep], distances[rows[keep], cols[keep]]
        alone = (counts[rows_global, d] <= limit) & (counts[cols, d] <= limit)
        value_pairs.append((rows_global[alone], cols[alone], d[alone]))

    # Items of one value are linked to each other when the value is not crowded.
    order = np.argsort(item_value, kind="stable")
    starts = np.concatenate([[0], np.cumsum(multiplicity)[:-1]])
    items_of = [order[s : s + m] for s, m in zip(starts.tolist(), multiplicity.tolist())]
    first, second, distance = [], [], []
    for value, members in enumerate(items_of):
        if members.size < 2 or counts[value, 0] > limit:
            continue
        a, b = np.triu_indices(members.size, k=1)
        first.append(members[a])
        second.append(members[b])
        distance.append(np.zeros(a.size, dtype=np.int64))
    for rows, cols, d in value_pairs:
        for u, v, dist in zip(rows.tolist(), cols.tolist(), d.tolist()):
            a, b = np.meshgrid(items_of[u], items_of[v], indexing="ij")
            first.append(a.reshape(-1))
            second.append(b.reshape(-1))
            distance.append(np.full(a.size, dist, dtype=np.int64))
    lo = np.concatenate(first).astype(np.int64) if first else empty
    hi = np.concatenate(second).astype(np.int64) if first else empty
    swap = lo > hi
    lo[swap], hi[swap] = hi[swap], lo[swap]
    # Items with an image within max_distance that none of these pairs links: look-alikes, not copies.
    has_close = counts[item_value, max_distance] >= 1
    linked = np.zeros(hashes.size, dtype=bool)
    linked[lo] = True
    linked[hi] = True
    crowded = int((has_close & ~linked).sum())
    return NearCopyPairs(lo, hi, np.concatenate(distance) if first else empty, crowded)
