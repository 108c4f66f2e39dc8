import pytest
import torch

from resources.anomaly.coreset import bank_size, greedy_coreset


def test_bank_size_keeps_the_ratio_under_the_cap() -> None:
    assert bank_size(1000, 0.1, 10_000) == 100
    assert bank_size(1_000_000, 0.1, 10_000) == 10_000
    assert bank_size(3, 0.1, 10_000) == 1


@pytest.mark.parametrize(("n", "ratio", "cap"), [(0, 0.1, 10), (10, 0.0, 10), (10, 1.5, 10), (10, 0.1, 0)])
def test_bank_size_refuses_what_makes_no_bank(n: int, ratio: float, cap: int) -> None:
    with pytest.raises(ValueError):
        bank_size(n, ratio, cap)


def _clusters(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0] * 8, [50.0] * 8, [-50.0] + [0.0] * 7])
    sizes = [500, 20, 3]  # a rare but normal kind of patch: three points far from the rest
    points = torch.cat([c + 0.1 * torch.randn(n, 8, generator=generator) for c, n in zip(centres, sizes)])
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    return points, labels


def test_greedy_coreset_covers_rare_clusters_a_random_pick_would_miss() -> None:
    points, labels = _clusters()
    chosen = greedy_coreset(points, 3, seed=0, projection_dim=64)
    assert sorted(labels[chosen].tolist()) == [0, 1, 2]


def test_greedy_coreset_in_a_projection_still_covers_them() -> None:
    points, labels = _clusters()
    chosen = greedy_coreset(points, 3, seed=1, projection_dim=4)
    assert sorted(labels[chosen].tolist()) == [0, 1, 2]


def test_greedy_coreset_is_deterministic_for_a_seed() -> None:
    points = torch.randn(300, 16, generator=torch.Generator().manual_seed(3))
    first = greedy_coreset(points, 30, seed=7)
    assert torch.equal(first, greedy_coreset(points, 30, seed=7))
    assert len(set(first.tolist())) == 30
    assert not torch.equal(first, greedy_coreset(points, 30, seed=8))


def test_greedy_coreset_refuses_a_size_it_cannot_pick() -> None:
    points = torch.randn(5, 4)
    with pytest.raises(ValueError, match="1..5"):
        greedy_coreset(points, 6, seed=0)
    with pytest.raises(ValueError, match="non-empty"):
        greedy_coreset(torch.zeros(0, 4), 1, seed=0)
