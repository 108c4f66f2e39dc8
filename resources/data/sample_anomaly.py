"""The generated sample line in the MVTec AD layout, with a pixel-exact mask for every defect.

The anomaly task trains on good parts only and is judged on held-out good and defective parts with
masks; tests and the demo need such a dataset without shipping or downloading one. The scenes are
the sample line's (:mod:`resources.data.sample_scenes`): same plate, belt, cameras and defect kinds,
by default with the part fixtured in a jig under the station's light (``--free-pose``: the
classification line's poses and lighting; ``--look-alike``: one camera, one jig, one light and one
plate finish, so that parts differ only by dust, sensor noise and their defects, as on a line where
every part looks alike; ``--shots-per-part N``: each part photographed N times, with a
``metadata.csv`` naming its ``part_id``). A defect's mask is where the image differs from the same scene rendered without the
defect (same pose, lighting and sensor noise), so it follows whatever the renderer draws, missing
holes included.

Layout::

    out_dir/train/good/<index:03d>.png
    out_dir/test/good/<index:03d>.png
    out_dir/test/<defect>/<index:03d>.png
    out_dir/ground_truth/<defect>/<index:03d>_mask.png     0 or 255
    out_dir/metadata.csv         path,camera,part_id            (with --shots-per-part above 1:
                                 <index:03d>_<shot>.png, one mask per shot)
"""

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from resources.data.sample_line import _prepare_out_dir, _write_png
from resources.data.sample_render import render
from resources.data.sample_scenes import DEFAULT_CLASSES, SampleLineError, Scene, camera_spec, draw_scene, image_rngs

__all__ = ["MASK_LEVEL", "generate_anomaly_line"]

MASK_LEVEL = 8
"""Grey levels a pixel must change by, with the defect against without it, to be in the mask
(blur spreads a defect's faint halo; a change below this is not visible as a defect)."""

_CAMERAS = ("cam1", "cam2")


_LOOK_ALIKE_JITTER = 0.004
"""Position jitter of a part in the look-alike jig, as a fraction of the image (half a pixel at 128 px)."""


def _look_alike(seed: int, scene: Scene, scene_rng: np.random.Generator) -> Scene:
    """``scene`` on the look-alike station: the station's one plate, belt, light and pose (drawn once
    per seed), a part seated within about half a pixel, at most one speck of dust; its defect kept."""
    station_rng, _ = image_rngs(seed, "station", _CAMERAS[0], "station", 0)
    station = draw_scene(station_rng, "good", camera_spec(seed, _CAMERAS[0]), shift_position=0, fixtured=True)
    dx, dy = (_LOOK_ALIKE_JITTER * float(v) for v in scene_rng.normal(0.0, 1.0, 2))
    return dataclasses.replace(
        station, centre=(station.centre[0] + dx, station.centre[1] + dy), specks=scene.specks[:1], defect=scene.defect
    )


def _render_pair(
    seed: int,
    kind: str,
    split: str,
    index: int,
    size: int,
    colour: bool,
    fixtured: bool,
    look_alike: bool = False,
    shot: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    camera = _CAMERAS[0] if look_alike else _CAMERAS[index % len(_CAMERAS)]
    scene_rng, noise_rng = image_rngs(seed, kind, camera, split, index)
    scene = draw_scene(scene_rng, kind, camera_spec(seed, camera), shift_position=(index // 2) % 2, fixtured=fixtured)
    if look_alike:
        scene = _look_alike(seed, scene, scene_rng)
    if shot:  # the same part again: a new exposure, new sensor noise
        noise_rng = image_rngs(seed, kind, camera, f"{split}-shot{shot}", index)[1]
    twin_noise = copy.deepcopy(noise_rng)
    pixels = render(scene, size, colour, noise_rng)
    if scene.defect is None:
        return pixels, None
    clean = render(dataclasses.replace(scene, defect=None), size, colour, twin_noise)
    change = np.abs(pixels.astype(np.int16) - clean.astype(np.int16))
    if change.ndim == 3:
        change = change.max(axis=2)
    return pixels, np.where(change >= MASK_LEVEL, 255, 0).astype(np.uint8)


def generate_anomaly_line(
    out_dir: Path,
    *,
    seed: int,
    train_good: int = 60,
    test_good: int = 30,
    test_per_defect: int = 10,
    image_size: int = 128,
    defects: Sequence[str] = tuple(name for name in DEFAULT_CLASSES if name != "good"),
    colour: bool = False,
    fixtured: bool = True,
    look_alike: bool = False,
    shots_per_part: int = 1,
) -> dict[str, int]:
    """Write the dataset; returns the image count per folder (``train/good``, ``test/<kind>``).

    ``fixtured`` (the default): parts sit in a jig under the station's light, as where anomaly
    detection is used (one pose within about 2 degrees, never dim; ``sample_scenes.draw_scene``).
    Without it, the classification sample line's free poses: parts at any angle, either way round,
    in daylight or dim night light, which a detector that knows only good parts must tell from defects.
    ``look_alike``: every part in one jig under one light with one finish (see the module docstring);
    most good parts then share one perceptual hash. ``shots_per_part``: exposures of each part, named
    ``<index>_<shot>.png`` and listed with their ``part_id`` in ``metadata.csv``.
    """
    if isinstance(shots_per_part, bool) or not isinstance(shots_per_part, int) or not 1 <= shots_per_part <= 20:
        raise SampleLineError(f"shots_per_part must be an integer in 1..20, got {shots_per_part!r}")
    if look_alike and not fixtured:
        raise SampleLineError("look_alike parts sit in a jig: it cannot be combined with a free pose")
    for what, value in (("train_good", train_good), ("test_good", test_good), ("test_per_defect", test_per_defect)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 999:
            raise SampleLineError(f"{what} must be an integer in 1..999, got {value!r}")
    unknown = [kind for kind in defects if kind not in DEFAULT_CLASSES or kind == "good"]
    if unknown or not defects:
        raise SampleLineError(
            f"defects {list(defects)!r}: choose one or more of {', '.join(k for k in DEFAULT_CLASSES if k != 'good')}"
        )
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    plan = [("train/good", "good", "train", train_good), ("test/good", "good", "test", test_good)]
    plan += [(f"test/{kind}", kind, "test", test_per_defect) for kind in defects]
    counts: dict[str, int] = {}
    metadata = ["path,camera,part_id"]
    for folder, kind, split, count in plan:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            for shot in range(shots_per_part):
                stem = f"{index:03d}" if shots_per_part == 1 else f"{index:03d}_{shot}"
                pixels, mask = _render_pair(seed, kind, split, index, image_size, colour, fixtured, look_alike, shot)
                _write_png(out_dir / folder / f"{stem}.png", pixels)
                camera = _CAMERAS[0] if look_alike else _CAMERAS[index % len(_CAMERAS)]
                metadata.append(f"{folder}/{stem}.png,{camera},{folder.replace('/', '-')}-{index:03d}")
                if mask is not None:
                    (out_dir / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                    _write_png(out_dir / "ground_truth" / kind / f"{stem}_mask.png", mask)
        counts[folder] = count * shots_per_part
    if shots_per_part > 1:
        (out_dir / "metadata.csv").write_text("\n".join(metadata) + "\n", encoding="utf-8")
    return counts
