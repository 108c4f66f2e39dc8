"""Greedy coreset subsampling: a memory bank that covers every kind of good patch, at a fixed size.

Keeping every patch of every good image makes the bank, the search and the device's memory grow with
the training set. A random subset drops the rare-but-normal patches (a fixture's edge seen on few
images) and they then score as anomalies. The greedy k-centre rule (PatchCore's) picks, one at a time,
the patch farthest from everything already chosen, so the bank covers the feature space: its largest
"hole" shrinks with every pick.

Distances for the selection are taken in a seeded Johnson-Lindenstrauss random projection
(``projection_dim``, default 64), which roughly preserves them and halves the memory read per pick;
the bank itself keeps the full descriptors. Cost: one pass over the candidates per pick, so time is
linear in the number of candidate patches for a capped bank size, and memory is the candidates plus
their projection.
"""

import logging
import math

import torch

__all__ = ["bank_size", "greedy_coreset"]

logger = logging.getLogger(__name__)


def bank_size(n_patches: int, ratio: float, cap: int) -> int:
    """How many patches the bank keeps: ``ratio`` of the candidates, at most ``cap``, at least one."""
    if n_patches < 1:
        raise ValueError("no candidate patches: the detector needs at least one good training image")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"coreset ratio must be in (0, 1], got {ratio}")
    if cap < 1:
        raise ValueError(f"memory-bank cap must be >= 1, got {cap}")
    return max(1, min(cap, n_patches, math.ceil(ratio * n_patches)))


def greedy_coreset(features: torch.Tensor, size: int, seed: int, projection_dim: int = 64) -> torch.Tensor:
    """Indices (int64, length ``size``) of the greedy k-centre coreset of ``features`` (N×D).

    The first centre is a seeded random patch; each next one is the candidate whose nearest chosen
    centre is farthest. Deterministic for a given ``seed`` and input.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be a non-empty N×D matrix, got {tuple(features.shape)}")
    n, d = features.shape
    if not 1 <= size <= n:
        raise ValueError(f"coreset size must be in 1..{n}, got {size}")
    generator = torch.Generator().manual_seed(seed)
    points = features.to(torch.float32)
    if projection_dim < d:
        projection = torch.randn(d, projection_dim, generator=generator) / math.sqrt(projection_dim)
        points = points @ projection
    points = points.contiguous()
    squared = (points * points).sum(dim=1)
    chosen = torch.empty(size, dtype=torch.int64)
    chosen[0] = int(torch.randint(n, (1,), generator=generator))
    nearest = torch.addmv(squared + squared[chosen[0]], points, points[chosen[0]], alpha=-2.0)
    for i in range(1, size):
        pick = int(torch.argmax(nearest))
        chosen[i] = pick
        distance = torch.addmv(squared + squared[pick], points, points[pick], alpha=-2.0)
        torch.minimum(nearest, distance, out=nearest)
    logger.info("coreset: %d of %d patches (projection %d of %d dims)", size, n, min(projection_dim, d), d)
    return chosen
