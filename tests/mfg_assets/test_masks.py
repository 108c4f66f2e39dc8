"""One mask per image content: duplicates with the same mask merge, a different mask is a conflict."""

import pandas as pd

from mfg_assets.masks import MASK_COLUMNS, first_mask_per_image


def _row(batch: str, image: str, image_sha: str, mask_sha: str) -> dict:
    return dict(zip(MASK_COLUMNS, ("l.v", batch, image, image_sha, f"ground_truth/{image}", mask_sha, f"a/{mask_sha}", 8, 8), strict=True))


def test_an_image_stored_twice_keeps_its_first_mask_and_reports_a_different_one() -> None:
    masks = pd.DataFrame(
        [
            _row("b2", "test/crack/1.png", "img1", "m-late"),  # same content as b1's image, other mask
            _row("b1", "test/crack/1.png", "img1", "m-first"),
            _row("b1", "test/dent/2.png", "img2", "m2"),
            _row("b3", "test/dent/2.png", "img2", "m2"),  # same mask again: merged silently
        ]
    )
    kept, conflicts = first_mask_per_image(masks)
    assert sorted(zip(kept["image_sha256"], kept["mask_sha256"], strict=True)) == [("img1", "m-first"), ("img2", "m2")]
    assert [(c["batch"], c["mask_sha256"], c["first"]) for c in conflicts] == [("b2", "m-late", "b1/test/crack/1.png")]
