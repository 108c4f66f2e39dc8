"""Image inspection, decoding and near-duplicate grouping."""

import hashlib
import itertools
import pickle
import time
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageFile

from resources.data.sample_line import SampleLineSummary, generate_sample_line
from resources.data.images import (
    REJECTION_REASONS,
    SUPPORTED_EXTENSIONS,
    ImageFacts,
    ImageRejected,
    inspect_image,
    load_rgb,
    load_rgb_batch,
    near_duplicate_groups,
    perceptual_hash,
)
from tests.bad_images import TOO_LARGE_MAX_PIXELS, TOO_LARGE_NAME, write_bad_images

NEAR_DUPLICATE_BITS = 4  # what the dataset split uses


def _save(path: Path, image: Image.Image, image_format: str | None = None) -> Path:
    image.save(path, format=image_format)
    return path


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


# ------------------------------------------------------------------------------------------
# inspect_image: rejections


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("bad")
    return folder, write_bad_images(folder)


def test_the_helper_covers_every_required_kind(bad_folder: tuple[Path, dict[str, str]]) -> None:
    folder, expected = bad_folder
    assert set(expected.values()) <= REJECTION_REASONS
    assert set(expected.values()) == {
        "zero_byte", "truncated", "undecodable", "unsupported_extension", "wrong_extension",
        "sixteen_bit", "cmyk", "too_large",
    }
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    assert all(p.stat().st_size < 4096 for p in folder.iterdir())


def test_every_bad_file_is_rejected_with_its_reason_and_name(
    bad_folder: tuple[Path, dict[str, str]],
) -> None:
    folder, expected = bad_folder
    for name, reason in expected.items():
        with pytest.raises(ImageRejected) as caught:
            inspect_image(folder / name, max_pixels=TOO_LARGE_MAX_PIXELS)
        assert caught.value.reason == reason, (name, str(caught.value))
        assert caught.value.path == folder / name
        assert str(caught.value) == f"{folder / name}: {caught.value.detail}"
        assert name in str(caught.value)


def test_rejection_messages_say_what_to_do(bad_folder: tuple[Path, dict[str, str]]) -> None:
    folder, _ = bad_folder

    def message(name: str) -> str:
        with pytest.raises(ImageRejected) as caught:
            inspect_image(folder / name, max_pixels=TOO_LARGE_MAX_PIXELS)
        return str(caught.value)

    assert "not an image or corrupt; re-export it from the camera" in message("garbage.png")
    assert all(ext in message("notes.txt") for ext in SUPPORTED_EXTENSIONS)
    renamed = message("png_named.jpg")
    assert "is a PNG image" in renamed and "rename it to png_named.png" in renamed
    assert "(I;16) is not supported; export 8-bit images" in message("sixteen_bit.png")
    assert "convert it to RGB" in message("cmyk.jpg")
    assert "crop or downscale; or raise max_pixels" in message(TOO_LARGE_NAME)


def test_too_large_file_passes_with_the_default_limit(
    bad_folder: tuple[Path, dict[str, str]],
) -> None:
    folder, _ = bad_folder
    assert inspect_image(folder / TOO_LARGE_NAME).width == 64


def test_png_cut_off_in_its_last_chunk_is_truncated(tmp_path: Path) -> None:
    """Pixel data complete but IEND missing: load() accepts it, the chunk check must not."""
    data = (_save(tmp_path / "whole.png", Image.fromarray(_noise((8, 8, 3))))).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:-12])
    with pytest.raises(ImageRejected) as caught:
        inspect_image(tmp_path / "cut.png")
    assert caught.value.reason == "truncated"


def test_corrupt_png_data_is_undecodable(tmp_path: Path) -> None:
    whole = _save(tmp_path / "whole.png", Image.fromarray(_noise((16, 16, 3))))
    data = bytearray(whole.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "flipped.png").write_bytes(bytes(data))
    with pytest.raises(ImageRejected) as caught:
        inspect_image(tmp_path / "flipped.png")
    assert caught.value.reason == "undecodable"


def test_real_but_unsupported_format_is_named(tmp_path: Path) -> None:
    _save(tmp_path / "anim.png", Image.new("P", (8, 8)), "GIF")
    with pytest.raises(ImageRejected) as caught:
        inspect_image(tmp_path / "anim.png")
    assert caught.value.reason == "unsupported_format"
    assert "GIF" in str(caught.value)


def test_float_tiff_is_sixteen_bit(tmp_path: Path) -> None:
    _save(tmp_path / "depth.tif", Image.fromarray(np.zeros((4, 4), dtype=np.float32)))
    with pytest.raises(ImageRejected) as caught:
        inspect_image(tmp_path / "depth.tif")
    assert caught.value.reason == "sixteen_bit"


def test_pillow_decompression_bomb_becomes_too_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _save(tmp_path / "big.png", Image.new("L", (20, 20)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # 400 pixels: warning range is 150..300
    with pytest.raises(ImageRejected) as caught:
        inspect_image(tmp_path / "big.png", max_pixels=10_000)
    assert caught.value.reason == "too_large"


def test_refuses_to_run_when_truncated_images_are_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _save(tmp_path / "ok.png", Image.new("L", (4, 4)))
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        inspect_image(tmp_path / "ok.png")


def test_missing_file_is_a_file_system_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        inspect_image(tmp_path / "gone.png")


def test_rejection_survives_pickling() -> None:
    original = ImageRejected(Path("cam2/0013.png"), "sixteen_bit", "export 8-bit images")
    copy = pickle.loads(pickle.dumps(original))
    assert (copy.path, copy.reason, copy.detail, str(copy)) == (
        original.path, original.reason, original.detail, "cam2/0013.png: export 8-bit images"
    )


# ------------------------------------------------------------------------------------------
# inspect_image: accepted files


@pytest.mark.parametrize(
    ("name", "image", "image_format", "mode", "channels"),
    [
        ("grey.png", Image.fromarray(_noise((12, 20))), "PNG", "L", 1),
        ("photo.jpg", Image.fromarray(_noise((12, 20, 3))), "JPEG", "RGB", 3),
        ("photo.JPEG", Image.fromarray(_noise((12, 20, 3))), "JPEG", "RGB", 3),
        ("alpha.png", Image.fromarray(_noise((12, 20, 4))), "PNG", "RGBA", 4),
        ("palette.png", Image.fromarray(_noise((12, 20, 3))).quantize(16), "PNG", "P", 1),
        ("grey_alpha.png", Image.fromarray(_noise((12, 20, 2)), mode="LA"), "PNG", "LA", 2),
        ("frame.bmp", Image.fromarray(_noise((12, 20, 3))), "BMP", "RGB", 3),
        ("frame.tiff", Image.fromarray(_noise((12, 20))), "TIFF", "L", 1),
    ],
)
def test_good_files_are_accepted_with_their_facts(
    tmp_path: Path, name: str, image: Image.Image, image_format: str, mode: str, channels: int
) -> None:
    path = _save(tmp_path / name, image, image_format)
    facts = inspect_image(path)
    data = path.read_bytes()
    assert facts == ImageFacts(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        n_bytes=len(data),
        format=image_format,
        width=20,
        height=12,
        mode=mode,
        channels=channels,
    )


# ------------------------------------------------------------------------------------------
# load_rgb


def test_load_rgb_replicates_grey_and_resolves_alpha_and_palette(tmp_path: Path) -> None:
    grey = _noise((6, 10))
    rgba = _noise((6, 10, 4), seed=1)
    palette = Image.fromarray(_noise((6, 10, 3), seed=2)).quantize(8)
    paths = {
        "grey": _save(tmp_path / "g.png", Image.fromarray(grey)),
        "rgba": _save(tmp_path / "a.png", Image.fromarray(rgba)),
        "palette": _save(tmp_path / "p.png", palette),
        "la": _save(tmp_path / "la.png", Image.fromarray(_noise((6, 10, 2)), mode="LA")),
    }
    for path in paths.values():
        pixels = load_rgb(path)
        assert pixels.shape == (6, 10, 3) and pixels.dtype == np.uint8
    assert (load_rgb(paths["grey"]) == grey[..., None]).all()
    assert (load_rgb(paths["rgba"]) == rgba[..., :3]).all()
    assert (load_rgb(paths["palette"]) == np.asarray(palette.convert("RGB"))).all()
    assert (load_rgb(paths["la"])[..., 0] == load_rgb(paths["la"])[..., 2]).all()


def test_load_rgb_from_bytes_resizes_to_an_exact_square(tmp_path: Path) -> None:
    data = _save(tmp_path / "wide.jpg", Image.fromarray(_noise((30, 50, 3)))).read_bytes()
    assert load_rgb(data).shape == (30, 50, 3)
    assert load_rgb(data, size=16).shape == (16, 16, 3)
    flat = _save(tmp_path / "flat.png", Image.new("L", (40, 20), 77))
    assert (load_rgb(flat, size=8) == 77).all()  # bilinear keeps a flat field flat


def test_load_rgb_batch_stacks_mixed_sources(tmp_path: Path) -> None:
    grey = _save(tmp_path / "g.png", Image.fromarray(_noise((9, 9))))
    colour = _save(tmp_path / "c.png", Image.fromarray(_noise((5, 7, 3)))).read_bytes()
    batch = load_rgb_batch([grey, colour, grey], 12, "letterbox")
    assert batch.shape == (3, 12, 12, 3) and batch.dtype == np.uint8
    assert (batch[0] == batch[2]).all()
    assert load_rgb_batch([], 12, "squash").shape == (0, 12, 12, 3)


def test_load_rgb_rejects_what_inspection_rejects(bad_folder: tuple[Path, dict[str, str]]) -> None:
    folder, _ = bad_folder
    for name in ("truncated.jpg", "truncated.png", "sixteen_bit.png", "cmyk.jpg", "garbage.png"):
        with pytest.raises(ImageRejected):
            load_rgb(folder / name)
    with pytest.raises(ImageRejected, match="^<bytes>: not an image"):
        load_rgb(b"not an image")
    with pytest.raises(ValueError, match="size must be"):
        load_rgb(folder / TOO_LARGE_NAME, size=0)


# ------------------------------------------------------------------------------------------
# perceptual_hash and near_duplicate_groups


@pytest.fixture(scope="module")
def sample_line(tmp_path_factory: pytest.TempPathFactory) -> SampleLineSummary:
    return generate_sample_line(
        tmp_path_factory.mktemp("line") / "out", seed=11, images_per_class=12, image_size=64
    )


def test_hash_is_the_same_for_path_bytes_and_arrays(sample_line: SampleLineSummary) -> None:
    path = next((sample_line.out_dir / "good").glob("*.png"))
    value = perceptual_hash(path)
    assert 0 <= value < 2**64
    assert perceptual_hash(path.read_bytes()) == value
    assert perceptual_hash(np.asarray(Image.open(path))) == value
    assert perceptual_hash(load_rgb(path)) == value  # grey replicated to RGB hashes the same
    assert perceptual_hash(path) == int(str(imagehash.phash(Image.open(path))), 16)
    assert str(imagehash.hex_to_hash(f"{value:016x}")) == f"{value:016x}"


def test_a_noisy_brighter_copy_is_grouped_with_its_original(sample_line: SampleLineSummary) -> None:
    path = next((sample_line.out_dir / "scratch").glob("*.png"))
    original = np.asarray(Image.open(path), dtype=np.float32)
    noise = np.random.default_rng(5).normal(0.0, 3.0, original.shape)
    copy = np.clip(original * 1.05 + 10.0 + noise, 0, 255).astype(np.uint8)
    hashes = [perceptual_hash(path), perceptual_hash(copy)]
    assert _distance(*hashes) <= NEAR_DUPLICATE_BITS
    assert near_duplicate_groups(hashes, NEAR_DUPLICATE_BITS) == [0, 0]


def test_distinct_generated_parts_are_not_merged(sample_line: SampleLineSummary) -> None:
    """The split groups at distance <= 4; one big transitive group would make it impossible."""
    paths = sorted(sample_line.out_dir.rglob("*.png"))
    hashes = [perceptual_hash(path) for path in paths]
    distances = [_distance(a, b) for a, b in itertools.combinations(hashes, 2)]
    groups = near_duplicate_groups(hashes, NEAR_DUPLICATE_BITS)
    sizes = np.bincount(groups)
    assert np.median(distances) >= 20
    assert np.mean(np.array(distances) <= NEAR_DUPLICATE_BITS) < 0.005
    assert sizes.max() <= 3 and len(sizes) >= 0.9 * len(paths)
    first, second = sorted((sample_line.out_dir / "good").glob("*.png"))[:2]
    pair = [perceptual_hash(first), perceptual_hash(second)]
    assert near_duplicate_groups(pair, NEAR_DUPLICATE_BITS) == [0, 1]


def test_groups_are_transitive_and_numbered_by_first_appearance() -> None:
    hashes = [0xF0, 0b0, 0b1, 0xF1, 0b11, 0b111, 0b0]
    assert near_duplicate_groups(hashes, 1) == [0, 1, 1, 0, 1, 1, 1]
    assert near_duplicate_groups(hashes, 0) == [0, 1, 2, 3, 4, 5, 1]
    assert near_duplicate_groups([], 4) == []
    assert near_duplicate_groups([2**64 - 1, 0], 64) == [0, 0]


def test_groups_match_a_plain_union_find() -> None:
    rng = np.random.default_rng(1)
    hashes = [int(value) for value in rng.integers(0, 2**12, 150)]
    parent = list(range(len(hashes)))

    def root(item: int) -> int:
        while parent[item] != item:
            item = parent[item]
        return item

    for i, j in itertools.combinations(range(len(hashes)), 2):
        if _distance(hashes[i], hashes[j]) <= 3:
            parent[root(i)] = root(j)
    ids: dict[int, int] = {}
    expected = [ids.setdefault(root(i), len(ids)) for i in range(len(hashes))]
    assert near_duplicate_groups(hashes, 3) == expected


def test_five_thousand_hashes_group_quickly() -> None:
    rng = np.random.default_rng(2)
    base = [int(value) for value in rng.integers(0, 2**63, 2500, dtype=np.uint64) * 2]
    hashes = base + [value ^ (1 << (index % 64)) for index, value in enumerate(base)]
    started = time.perf_counter()
    groups = near_duplicate_groups(hashes, NEAR_DUPLICATE_BITS)
    assert time.perf_counter() - started < 5.0
    assert groups[:2500] == groups[2500:]
    assert max(groups) + 1 == 2500


@pytest.mark.parametrize("bad", [[-1], [2**64], [1.5], [True]])
def test_hashes_must_be_unsigned_64_bit_ints(bad: list[object]) -> None:
    with pytest.raises(ValueError, match="hash #0"):
        near_duplicate_groups(bad, 4)  # type: ignore[arg-type]


def test_max_distance_is_bounded() -> None:
    with pytest.raises(ValueError, match="between 0 and 64"):
        near_duplicate_groups([1], 65)
