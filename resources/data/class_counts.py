"""The minimum-images label check: every class the model must learn has enough images."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from resources.data.label_check_tools import MAX_EXAMPLES, CheckOutcome, metric_key, require_columns

__all__ = ["TaskCounts", "min_images_per_class"]


@dataclass(frozen=True)
class TaskCounts:
    """Images per class as a task counts them, and the classes that may be empty (see
    :func:`min_images_per_class`)."""

    images: Mapping[str, int]
    optional: frozenset[str] = frozenset()


def min_images_per_class(
    consensus: pd.DataFrame,
    classes: Sequence[str],
    minimum: int,
    good_only: str | None = None,
    task_counts: "TaskCounts | None" = None,
) -> CheckOutcome:
    """Each taxonomy class has at least ``minimum`` images (by consensus label), and two classes exist.

    An empty class fails even with ``minimum`` 0: the model would have an output it was never taught.
    A dataset with one class present cannot train a classifier at all.

    ``good_only`` (an anomaly detector's good class): the minimum is for that class alone, which the
    detector learns from; defect types are rare by nature and only test it, so any number will do.

    ``task_counts`` (a task whose label is more than one class per image, e.g. boxes): images per
    class as the task counts them (an image with boxes of two classes counts for both), and the
    classes that may be empty (a detector's good class: images without boxes are welcome, not needed).
    """
    require_columns(consensus, ("sha256", "label"), "consensus")
    if minimum < 0:
        raise ValueError(f"min_images_per_class: minimum is {minimum}; it must be 0 or more")
    taxonomy = [str(c) for c in classes]
    counts = consensus.drop_duplicates("sha256")["label"].value_counts()
    per_class = {c: int(counts.get(c, 0)) for c in taxonomy}
    if task_counts is not None:
        per_class = {c: int(task_counts.images.get(c, 0)) for c in taxonomy}
    present = [c for c, n in per_class.items() if n > 0]
    if task_counts is not None:
        short = {c: n for c, n in per_class.items() if c not in task_counts.optional and (n < minimum or n == 0)}
    elif good_only is not None:
        short = {c: n for c, n in per_class.items() if c == good_only and (n < minimum or n == 0)}
    else:
        short = {c: n for c, n in per_class.items() if n < minimum or n == 0}
    failures = [
        {"class": c, "images": n, "minimum": minimum, "problem": "empty class" if n == 0 else "too few images"}
        for c, n in short.items()
    ]
    parts = []
    foreign = {c: int(n) for c, n in (task_counts.images.items() if task_counts else []) if c not in taxonomy}
    if foreign:  # e.g. a box class the variant was registered without
        failures += [{"class": c, "images": n, "minimum": minimum, "problem": "not a class of the variant"} for c, n in foreign.items()]
        parts.append(
            f"label class(es) {', '.join(sorted(foreign))} are not classes of the variant ({', '.join(taxonomy)}); "
            "register the variant again with them (mfgv onboard) or fix the labels"
        )
    if short:
        listed = ", ".join(f"{c}={n}" for c, n in list(short.items())[:MAX_EXAMPLES * 2])
        parts.append(
            f"{len(short)} of {len(taxonomy)} classes have fewer than {max(minimum, 1)} images "
            f"({listed}); label more images of those classes or remove unused classes from the variant"
        )
    if good_only is None and task_counts is None and len(present) < 2:
        which = f"only {present[0]!r} is present" if present else "no class of the taxonomy is present"
        parts.append(
            f"{which}: a classifier needs at least two classes; add labelled images of at least two "
            f"classes"
        )
        failures.append({"class": None, "images": int(sum(per_class.values())), "minimum": minimum,
                         "problem": "fewer than two classes present"})
    metrics: dict[str, float | int] = {f"images_{metric_key(c)}": n for c, n in per_class.items()}
    metrics.update({"n_classes_present": len(present), "minimum": minimum})
    passed = not parts
    summary = (
        "; ".join(parts)
        if parts
        else f"every class has at least {minimum} images ({', '.join(f'{c}={n}' for c, n in per_class.items())})"
    )
    return CheckOutcome(
        name="min_images_per_class", passed=passed, summary=summary, failures=failures, metrics=metrics
    )
