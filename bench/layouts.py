"""Lay the shared real datasets out as one folder per class, describe the machine, append figures (for bench/).

The datasets stay read-only where they are (`../shared/datasets`); each benchmark copies what it
needs into a scratch folder first.
"""

import os
import platform
import re
import shutil
from pathlib import Path

__all__ = ["append_markdown", "lay_out_magnetic_tile", "lay_out_magnetic_tile_mvtec", "lay_out_neu", "machine"]

NEU_CLASS = re.compile(r"^(?P<cls>.+?)_\d+\.jpg$")


def lay_out_neu(neu_dir: Path, out: Path) -> dict[str, int]:
    """NEU-DET as ``out/<class>/<file>`` (class = file-name prefix, e.g. crazing_12.jpg)."""
    counts: dict[str, int] = {}
    images = sorted(neu_dir.rglob("*.jpg"))
    if not images:
        raise SystemExit(f"{neu_dir}: no .jpg files; pass the neu_det folder (IMAGES/ and Validation_Images/)")
    for image in images:
        match = NEU_CLASS.match(image.name)
        if not match:
            raise SystemExit(f"{image}: name does not start with a class prefix like crazing_12.jpg")
        target = out / match["cls"] / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, target)
        counts[match["cls"]] = counts.get(match["cls"], 0) + 1
    return counts


def lay_out_magnetic_tile(source: Path, out: Path) -> dict[str, int]:
    """The JPEGs of each ``MT_*`` folder as ``out/<class>/<file>`` (the same-name PNG masks left out)."""
    counts = {}
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir() and p.name.startswith("MT_")):
        images = sorted(class_dir.rglob("*.jpg"))
        for image in images:
            target = out / class_dir.name / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, target)
        counts[class_dir.name] = len(images)
    if not counts:
        raise SystemExit(f"{source}: no MT_* class folders; pass the magnetic_tile folder")
    return counts


def append_markdown(path: Path, section: str) -> None:
    """Append a benchmark's section to a Markdown file (``--write``), creating the file if it is new."""
    before = path.read_text().rstrip() + "\n" if path.exists() else ""
    path.write_text(before + section.rstrip("\n") + "\n")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}"


def lay_out_magnetic_tile_mvtec(source: Path, out: Path, seed: int, train_share: float = 0.6) -> dict[str, int]:
    """Magnetic tile in the MVTec AD layout: a seeded ``train_share`` of ``MT_Free`` in ``train/good``,
    the other good tiles in ``test/good``, every defect tile in ``test/<class>`` with its PNG mask as
    ``ground_truth/<class>/<stem>_mask.png``. Files are symlinked (the dataset stays read-only)."""
    import random

    counts: dict[str, int] = {}
    class_dirs = sorted(p for p in source.iterdir() if p.is_dir() and p.name.startswith("MT_"))
    if not class_dirs:
        raise SystemExit(f"{source}: no MT_* class folders; pass the magnetic_tile folder")
    for class_dir in class_dirs:
        images = sorted(class_dir.rglob("*.jpg"))
        if class_dir.name == "MT_Free":
            shuffled = images[:]
            random.Random(seed).shuffle(shuffled)
            cut = round(train_share * len(shuffled))
            places = [("train/good", shuffled[:cut]), ("test/good", shuffled[cut:])]
        else:
            places = [(f"test/{class_dir.name}", images)]
        for folder, chosen in places:
            (out / folder).mkdir(parents=True, exist_ok=True)
            for image in chosen:
                (out / folder / image.name).symlink_to(image.resolve())
                mask = image.with_suffix(".png")
                if folder.startswith("test/") and folder != "test/good" and mask.is_file():
                    target = out / "ground_truth" / class_dir.name / f"{image.stem}_mask.png"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.symlink_to(mask.resolve())
            counts[folder] = len(chosen)
    return counts
