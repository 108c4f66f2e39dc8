"""Checks ``mfgv onboard`` makes before anything is landed or registered.

A bad option found an hour into a run, after the data was copied and a variant registered, costs
the user the hour and leaves debris; found here it costs seconds. Each failure is an
:class:`~mfg_assets.onboard.OnboardError`-style message naming the option and what to do. The
Dagster assets check the same things again (a run can be launched from the UI without this CLI).
"""

import math
from collections.abc import Mapping
from pathlib import Path

from resources.data.images import SUPPORTED_EXTENSIONS as IMAGE_SUFFIXES
from resources.preflight import PreflightError

__all__ = [
    "PreflightError",
    "check_cv_folds",
    "check_good_class_named",
    "check_part_ids_of",
    "class_counts",
    "check_not_mvtec_as_folders",
]

GOOD_WORDS = frozenset({"good", "ok", "okay", "pass", "passed", "normal", "free", "acceptable", "nodefect", "defectfree"})
"""Words in a class name that say "acceptable parts" (``good``, ``OK``, ``MT_Free``, ``no_defect``...)."""




def scan_dataset(data_dir: Path) -> None:
    """Walk the dataset once before anything is landed.

    Refused, with the path named: a symbolic link to a folder (it may loop back, as ``good/loop ->
    ..`` does, and would copy the dataset into itself), and a file or folder name that is not UTF-8
    (it cannot be stored in the warehouse or a label file; rename it).
    """
    import os

    for root, dirs, names in os.walk(data_dir, followlinks=False):
        for name in [*dirs, *names]:
            path = Path(root) / name
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(path).decode("utf-8", errors="backslashreplace")
                raise PreflightError(
                    f"{shown}: the name is not valid UTF-8; rename it (e.g. with `convmv` or by hand) and onboard again"
                ) from None
            if path.is_symlink() and path.is_dir():
                raise PreflightError(
                    f"{path} is a symbolic link to the folder {os.path.realpath(path)}; a dataset must not link "
                    "folders (a link back into the dataset would copy it into itself): copy the images in instead"
                )


def class_counts(data_dir: Path, label_format: str) -> dict[str, int]:
    """Images per class as the dataset declares them (folders, labels.csv, COCO or the MVTec layout)."""
    if label_format == "mvtec":
        from resources.data.labels import LabelImportError
        from resources.data.mvtec_labels import labels_from_mvtec

        paths = sorted(
            p.relative_to(data_dir).as_posix()
            for p in data_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(data_dir).parts)
        )
        try:
            labels = labels_from_mvtec(paths).labels
        except LabelImportError as exc:
            raise PreflightError(f"{data_dir}: {exc}") from exc
        counts = labels["label"].value_counts()
        return {"good": int(counts.get("good", 0)), **{str(k): int(v) for k, v in sorted(counts.items()) if k != "good"}}
    if label_format == "folders":
        counts = {}
        for folder in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            counts[folder.name] = sum(1 for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        return counts
    from resources.data.labels import labels_from_coco, labels_from_csv

    label_file = data_dir / ("labels.csv" if label_format == "csv" else "annotations.json")
    labels = labels_from_csv(label_file) if label_format == "csv" else labels_from_coco(label_file)
    distinct = labels.drop_duplicates("rel_path")
    return {str(k): int(v) for k, v in distinct["label"].value_counts().sort_index().items()}


def _image_paths(data_dir: Path) -> list[str]:
    return sorted(
        p.relative_to(data_dir).as_posix()
        for p in data_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(data_dir).parts)
    )


def dataset_labels(data_dir: Path, label_format: str):  # -> pd.DataFrame (rel_path, label)
    """Each image's label as the dataset declares it (the first label a file gives)."""
    import pandas as pd

    if label_format == "folders":
        paths = [p for p in _image_paths(data_dir) if "/" in p]
        return pd.DataFrame({"rel_path": paths, "label": [p.split("/", 1)[0] for p in paths]})
    if label_format == "mvtec":
        from resources.data.mvtec_labels import labels_from_mvtec

        labels = labels_from_mvtec(_image_paths(data_dir)).labels
    else:
        from resources.data.labels import labels_from_coco, labels_from_csv

        label_file = data_dir / ("labels.csv" if label_format == "csv" else "annotations.json")
        labels = labels_from_csv(label_file) if label_format == "csv" else labels_from_coco(label_file)
    return labels[["rel_path", "label"]].drop_duplicates("rel_path").reset_index(drop=True)


def check_part_ids_of(data_dir: Path, label_format: str, group_by: str, labels=None) -> None:  # labels: pd.DataFrame | None
    """The part ids a dataset's ``metadata.csv`` gives must group its images: every image has one,
    no part has two labels; ``--group-by metadata`` needs them at all (the asset checks again)."""
    import pandas as pd

    from resources.data.grouping import GroupingError, check_part_ids
    from resources.data.ingest import PART_ID_ALIASES

    metadata_file = data_dir / "metadata.csv"
    if not metadata_file.is_file():
        if group_by == "metadata":
            raise PreflightError(
                f"--group-by metadata: {metadata_file} does not exist; write it with a header path,part_id and one row "
                "per image (or use --group-by phash)"
            )
        return
    try:
        metadata = pd.read_csv(metadata_file, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise PreflightError(f"{metadata_file}: cannot be read as CSV ({exc}); fix the file") from exc
    if "path" not in metadata.columns:
        raise PreflightError(f"{metadata_file}: has no 'path' column (columns: {', '.join(metadata.columns)}); add it")
    ids = metadata.drop_duplicates("path", keep="last").rename(columns={"path": "rel_path"})
    if "part_id" not in ids.columns and "serial" in ids.columns:
        ids = ids.rename(columns={"serial": "part_id"})
    keep = [c for c in ("rel_path", PART_ID_ALIASES[0], "capture_id") if c in ids.columns]
    given = labels if labels is not None else dataset_labels(data_dir, label_format)
    frame = given[["rel_path", "label"]].merge(ids[keep], on="rel_path", how="left")
    try:
        check_part_ids(frame, where=str(metadata_file), required=group_by == "metadata")
    except GroupingError as exc:
        raise PreflightError(str(exc)) from exc


_GOOD_NAMES = frozenset({"good", "ok", "okay", "pass", "passed", "normal", "free", "acceptable", "nodefect", "nodefects",
                         "defectfree", "nondefective", "nodefective"})
_NEGATIONS = frozenset({"not", "no", "non", "nok", "nio", "ng", "un"})


def _good_like(name: str) -> int:
    """How surely a class name means acceptable parts: 2 for a whole name (``good``, ``no_defect``),
    1 for a good word among others (``MT_Free``), 0 for none or a negated one (``not_ok``, ``no_good``)."""
    import re

    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    if "".join(words) in _GOOD_NAMES:
        return 2
    if _NEGATIONS.intersection(words):
        return 0
    return 1 if GOOD_WORDS.intersection(words) else 0


def check_good_class_named(classes: tuple[str, ...], good_class: str | None, no_good_class: bool, task: str) -> None:
    """A class that looks like the good parts, with no --good-class, would train a model without
    false-reject and escape rates and say nothing: ask which it is before anything is copied."""
    if good_class is not None and no_good_class:
        raise PreflightError("--good-class and --no-good-class contradict each other: pass one of them")
    if good_class is not None or no_good_class or task != "classify":
        return
    named = sorted((c for c in classes if _good_like(c)), key=lambda c: -_good_like(c))
    if named:
        raise PreflightError(
            f"class {named[0]!r} looks like the good parts, but no --good-class was given: pass --good-class {named[0]} "
            "to get false-reject and escape rates and a calibrated threshold, or --no-good-class to train every class "
            "as a defect type"
        )


def check_not_mvtec_as_folders(data_dir: Path, label_format: str) -> None:
    """An MVTec AD layout read as class folders would become classes ``ground_truth, test, train``."""
    if label_format != "folders":
        return
    folders = {p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if {"train", "test"} <= folders and folders <= {"train", "test", "ground_truth", "validation"}:
        raise PreflightError(
            f"{data_dir} looks like the MVTec AD layout (train/, test/{', ground_truth/' if 'ground_truth' in folders else ''}), "
            "not one folder per class: onboard it with --task anomaly --format mvtec"
        )


def check_cv_folds(folds: int | None, counts: Mapping[str, int]) -> None:
    """Each class must keep at least ``folds`` images in train + val (the default split's share)."""
    if folds is None or folds == 0:
        return
    from mfg_assets.datasets import SplitConfig

    defaults = SplitConfig()
    share = defaults.train_fraction + defaults.val_fraction
    if folds < 2:
        raise PreflightError(f"--cv-folds {folds}: cross-validation needs at least 2 folds")
    short = {name: n for name, n in counts.items() if math.floor(n * share) < folds}
    if short:
        listed = ", ".join(f"{name} ({n} images, about {math.floor(n * share)} in train + val)" for name, n in short.items())
        fewest = max(2, min(math.floor(n * share) for n in counts.values()))
        raise PreflightError(
            f"--cv-folds {folds}: too few images for {folds} folds in class(es) {listed}; "
            f"use --cv-folds {fewest} or fewer, or add images of those classes"
        )
