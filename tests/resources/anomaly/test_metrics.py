import numpy as np
import pytest

from resources.anomaly.metrics import image_auroc, pixel_auroc, pro_score


def test_image_auroc_ranks_and_is_none_without_both_kinds() -> None:
    assert image_auroc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([False, False, True, True])) == 1.0
    assert image_auroc(np.array([0.9, 0.2, 0.1, 0.8]), np.array([False, False, True, True])) == 0.25
    assert image_auroc(np.array([0.1, 0.2]), np.array([False, False])) is None


def _masks() -> np.ndarray:
    masks = np.zeros((3, 16, 16), dtype=bool)
    masks[0, 2:4, 2:4] = True  # a small defect
    masks[0, 8:16, 8:16] = True  # a large one in the same image
    masks[1, 5:7, 0:10] = True  # a thin one
    return masks  # image 2 is good


def test_a_perfect_map_scores_one_and_a_blind_one_less() -> None:
    masks = _masks()
    perfect = masks.astype(np.float32)
    assert pixel_auroc(perfect, masks) == 1.0
    assert pro_score(perfect, masks) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = rng.random(masks.shape).astype(np.float32)
    assert pro_score(noise, masks) < 0.3
    assert 0.3 < pixel_auroc(noise, masks) < 0.7


def _pro_by_sweep(maps: np.ndarray, masks: np.ndarray, max_fpr: float) -> float:
    """PRO the slow, obvious way: every threshold, every region (a reference for the exact version)."""
    from scipy import ndimage

    regions = []
    for index in range(len(masks)):
        components, count = ndimage.label(masks[index], structure=np.ones((3, 3)))
        regions += [(index, components == k) for k in range(1, count + 1)]
    normal = ~masks
    points = [(0.0, 0.0)]
    for threshold in np.unique(maps)[::-1]:
        flagged = maps >= threshold
        fpr = (flagged & normal).sum() / normal.sum()
        pro = np.mean([flagged[i][region].mean() for i, region in regions])
        points.append((fpr, pro))
    fpr, pro = np.array(points).T
    keep = fpr <= max_fpr
    cut = int(keep.sum())
    xs, ys = list(fpr[:cut]), list(pro[:cut])
    if cut < len(fpr):
        share = (max_fpr - fpr[cut - 1]) / (fpr[cut] - fpr[cut - 1])
        xs.append(max_fpr)
        ys.append(pro[cut - 1] + share * (pro[cut] - pro[cut - 1]))
    return float(np.trapezoid(ys, xs) / max_fpr)


def test_pro_matches_the_threshold_sweep_definition() -> None:
    masks = _masks()
    rng = np.random.default_rng(1)
    maps = (masks * 0.4 + rng.random(masks.shape) * 0.8).round(2).astype(np.float32)  # ties on purpose
    assert pro_score(maps, masks) == pytest.approx(_pro_by_sweep(maps, masks, 0.3), abs=1e-9)


def test_a_small_defect_counts_as_much_as_a_large_one_in_pro() -> None:
    masks = _masks()
    large_only = np.zeros(masks.shape, dtype=np.float32)
    large_only[0, 8:16, 8:16] = 1.0  # 64 of the 88 defect pixels, one region of three
    small_only = np.zeros(masks.shape, dtype=np.float32)
    small_only[0, 2:4, 2:4] = 1.0
    small_only[1, 5:7, 0:10] = 1.0  # 24 pixels, two regions of three
    assert pixel_auroc(large_only, masks) > pixel_auroc(small_only, masks)
    assert pro_score(large_only, masks) < pro_score(small_only, masks)


def test_pixels_outside_the_part_are_left_out() -> None:
    masks = _masks()
    maps = masks.astype(np.float32)
    maps[:, :, 15] = 5.0  # the letterbox border lights up
    valid = np.ones(masks.shape, dtype=bool)
    valid[:, :, 15] = False
    masks[:, :, 15] = False
    assert pixel_auroc(maps, masks) < 1.0
    assert pixel_auroc(maps, masks, valid) == 1.0
    assert pro_score(maps, masks, valid) == pytest.approx(1.0)


def test_pixel_figures_need_defect_pixels_and_matching_shapes() -> None:
    clean = np.zeros((2, 8, 8), dtype=bool)
    assert pixel_auroc(np.zeros((2, 8, 8)), clean) is None
    assert pro_score(np.zeros((2, 8, 8)), clean) is None
    with pytest.raises(ValueError, match="must both be"):
        pixel_auroc(np.zeros((2, 8, 8)), np.zeros((2, 8, 9), dtype=bool))


def test_a_defect_touching_itself_at_a_corner_is_one_region() -> None:
    masks = np.zeros((1, 8, 8), dtype=bool)
    masks[0, 1, 1] = masks[0, 2, 2] = True  # one diagonal streak
    masks[0, 6, 6] = True  # a second defect
    maps = np.zeros(masks.shape, dtype=np.float32)
    maps[0, 1, 1] = maps[0, 2, 2] = 1.0  # the streak is found whole, the speck not at all
    # two regions, one found: PRO 1/2 at FPR 0 (four-connectivity would see three regions, two found: 2/3)
    assert pro_score(maps, masks, max_fpr=0.01) == pytest.approx(0.5, abs=0.01)
