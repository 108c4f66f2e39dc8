"""The generated sample line in the MVTec AD layout, with a pixel-exact mask for every defect.

The anomaly task trains on good parts only and is judged on held-out good and defective parts with
masks; tests and the demo need such a dataset without shipping or downloading one. The scenes are
the sample line's (:mod:`resources.data.sample_scenes`): same plate, belt, cameras and defect kinds,
by default with the part fixtured in a jig under the station's light (``--free-pose``: the
classification line's poses and lighting). A defect's mask is where the image differs from the same scene rendered without the
defect (same pose, lighting and sensor noise), so it follows whatever the renderer draws, missing
holes included.

Layout::

    out_dir/train/good/<index:03d>.png
    out_dir/test/good/<index:03d>.png
    out_dir/test/<defect>/<index:03d>.png
    out_dir/ground_truth/<defect>/<index:03d>_mask.png     0 or 255
"""

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from resources.data.sample_line import _prepare_out_dir, _write_png
from resources.data.sample_render import render
from resources.data.sample_scenes import DEFAULT_CLASSES, SampleLineError, camera_spec, draw_scene, image_rngs

__all__ = ["MASK_LEVEL", "generate_anomaly_line"]

MASK_LEVEL = 8
"""Grey levels a pixel must change by, with the defect against without it, to be in the mask
(blur spreads a defect's faint halo; a change below this is not visible as a defect)."""

_CAMERAS = ("cam1", "cam2")


def _render_pair(
    seed: int, kind: str, split: str, index: int, size: int, colour: bool, fixtured: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    camera = _CAMERAS[index % len(_CAMERAS)]
    scene_rng, noise_rng = image_rngs(seed, kind, camera, split, index)
    scene = draw_scene(scene_rng, kind, camera_spec(seed, camera), shift_position=(index // 2) % 2, fixtured=fixtured)
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
) -> dict[str, int]:
    """Write the dataset; returns the image count per folder (``train/good``, ``test/<kind>``).

    ``fixtured`` (the default): parts sit in a jig under the station's light, as where anomaly
    detection is used (one pose within about 2 degrees, never dim; ``sample_scenes.draw_scene``).
    Without it, the classification sample line's free poses: parts at any angle, either way round,
    in daylight or dim night light, which a detector that knows only good parts must tell from defects.
    """
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
    for folder, kind, split, count in plan:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            pixels, mask = _render_pair(seed, kind, split, index, image_size, colour, fixtured)
            _write_png(out_dir / folder / f"{index:03d}.png", pixels)
            if mask is not None:
                (out_dir / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                _write_png(out_dir / "ground_truth" / kind / f"{index:03d}_mask.png", mask)
        counts[folder] = count
    return counts
