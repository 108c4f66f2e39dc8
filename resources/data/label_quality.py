"""Label checks that gate a dataset: coverage, taxonomy, duplicates, class balance, reviewer agreement.

Each check is a pure function from tables to a ``CheckOutcome`` so the ``annotations`` asset checks can
turn it into Dagster metadata, and so it can be tested without Dagster. A check never raises for bad
labels: it reports every offending row, because a labelling team fixes a batch in one pass only when it
sees all of it. It raises only for programming errors (a table without the columns it needs).

The table-level expectations (labels in the taxonomy, no missing labels or hashes) run on
great-expectations so their results use the same vocabulary as the rest of the data-quality tooling;
the checks that need grouping across rows (duplicates, agreement) are plain pandas. great_expectations
takes seconds to import, so it is imported inside the functions that use it, and ``run_all`` builds one
ephemeral context and reuses it.

Input tables: ``images`` has ``rel_path`` (and ``batch``, ``sha256``) per ingested image; ``labels``
has ``sha256``, ``rel_path``, ``batch``, ``label``, ``reviewer`` (and ``source``) per label row, i.e.
the output of ``resources.data.labels.import_batch_labels`` joined to the ingest table on
(batch, rel_path); ``sha256`` is null for a label whose image was not ingested.
"""

import difflib
import itertools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from resources.data.class_counts import TaskCounts, min_images_per_class
from resources.data.label_check_tools import (
    MAX_EXAMPLES,
    CheckOutcome,
    some_examples,
    gx_validate,
    metric_key,
    as_records,
    require_columns,
    where_of,
    majority_labels,
    new_gx_context,
)

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext

__all__ = [
    "CheckOutcome",
    "TaskCounts",
    "consensus_labels",
    "every_image_labelled",
    "labels_in_taxonomy",
    "min_images_per_class",
    "new_gx_context",
    "no_conflicting_duplicates",
    "reviewer_agreement",
    "run_all",
]

logger = logging.getLogger(__name__)

_SOURCE_FILES = {"csv": "labels.csv", "coco": "annotations.json", "folders": "the class folders"}


# --------------------------------------------------------------------------------------- consensus


def consensus_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """One label per image content (sha256): the majority of its reviewers.

    A reviewer votes once per label for an image, so the same picture copied three times into one
    class folder is not three opinions. Ties go to the first label in sort order so the dataset is
    reproducible, and are flagged (``tied``) for re-review. Rows without a hash or label are left
    out: ``every_image_labelled`` and ``labels_in_taxonomy`` report them.

    Output columns: sha256, label, n_reviewers, agreed, tied; sorted by sha256.
    """
    require_columns(labels, ("sha256", "label", "reviewer"), "labels")
    valid = labels.loc[labels["sha256"].notna() & labels["label"].notna(), ["sha256", "label", "reviewer"]]
    valid = valid.assign(reviewer=valid["reviewer"].fillna("(unknown)"))
    columns = ["sha256", "label", "n_reviewers", "agreed", "tied"]
    if valid.empty:
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in zip(columns, [str, str, "int64", bool, bool])})
    votes = valid.drop_duplicates(["sha256", "reviewer", "label"])
    winners = majority_labels(votes, ["sha256"])
    grouped = valid.groupby("sha256")
    stats = pd.DataFrame(
        {
            "n_reviewers": grouped["reviewer"].nunique().astype("int64"),
            "agreed": grouped["label"].nunique() == 1,
        }
    ).reset_index()
    out = winners.merge(stats, on="sha256", how="left")
    return out[columns].sort_values("sha256").reset_index(drop=True)


# ---------------------------------------------------------------------------------------- checks


def every_image_labelled(images: pd.DataFrame, labels: pd.DataFrame) -> CheckOutcome:
    """Every ingested image has a label, and every label names an ingested image.

    Images and labels are matched on (batch, rel_path) when both tables carry ``batch``, else on
    ``rel_path``. A label whose image is missing is usually a renamed or deleted file, which the
    label file's owner must fix, so the message names the file the label came from.
    """
    require_columns(images, ("rel_path",), "images")
    require_columns(labels, ("rel_path", "label"), "labels")
    keys = ["batch", "rel_path"] if "batch" in images.columns and "batch" in labels.columns else ["rel_path"]
    labelled = labels.loc[labels["label"].notna()]
    image_keys = images[keys].drop_duplicates()
    label_keys = labelled[keys].drop_duplicates()

    with_flag = image_keys.merge(label_keys, on=keys, how="left", indicator=True)
    unlabelled_keys = with_flag.loc[with_flag["_merge"] == "left_only", keys]
    unlabelled = images.merge(unlabelled_keys, on=keys).sort_values(keys)
    orphans = labels.merge(image_keys, on=keys, how="left", indicator=True)
    orphans = orphans.loc[orphans["_merge"] == "left_only"].drop(columns="_merge").sort_values(keys)

    failures = [
        {"problem": "image has no label", **row}
        for row in as_records(unlabelled, ("sha256", "batch", "rel_path"))
    ] + [
        {"problem": "label names an image that was not ingested", **row}
        for row in as_records(orphans, ("batch", "rel_path", "label", "reviewer", "source"))
    ]
    n_images = len(image_keys)
    n_unlabelled = len(unlabelled_keys)
    orphan_paths = orphans.drop_duplicates(keys)
    parts = []
    if n_unlabelled:
        first = [where_of(r) for r in as_records(unlabelled.head(MAX_EXAMPLES), keys)]
        parts.append(
            f"{n_unlabelled} of {n_images} images have no label (first: {some_examples(first)}); "
            f"label them and re-export the labels"
        )
    if len(orphan_paths):
        described = []
        for row in as_records(orphan_paths.head(MAX_EXAMPLES), [*keys, "source"]):
            origin = _SOURCE_FILES.get(str(row.get("source")), "the labels")
            described.append(f"{origin} names {where_of(row)} but no such image was ingested")
        parts.append(
            f"{len(orphan_paths)} labelled path(s) have no ingested image ({'; '.join(described)}); "
            f"fix the path in the label file or add the missing image"
        )
    passed = not parts
    summary = "; ".join(parts) if parts else f"all {n_images} images have a label and every label has an image"
    return CheckOutcome(
        name="every_image_labelled",
        passed=passed,
        summary=summary,
        failures=failures,
        metrics={
            "n_images": n_images,
            "n_unlabelled_images": n_unlabelled,
            "n_labels_without_image": len(orphan_paths),
        },
    )


def labels_in_taxonomy(
    labels: pd.DataFrame, classes: Sequence[str], context: "AbstractDataContext | None" = None
) -> CheckOutcome:
    """Every label is a class of the variant's taxonomy, and no row lacks a label or image hash.

    Class names are compared as written (case-sensitive): "Scratch" and "scratch" would otherwise
    become one class in training but two in reports. Near misses get a "did you mean" hint. Runs on
    great_expectations; pass ``context`` to reuse one (``run_all`` does), else one is created.
    """
    from great_expectations import expectations as gxe

    require_columns(labels, ("label",), "labels")
    taxonomy = [str(c) for c in classes]
    if not taxonomy:
        raise ValueError("labels_in_taxonomy: the taxonomy is empty; register the variant's classes first")
    context = context if context is not None else new_gx_context()
    table = labels.reset_index(drop=True)
    expectations = [
        gxe.ExpectColumnValuesToNotBeNull(column="label"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=taxonomy),
    ]
    if "sha256" in table.columns:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column="sha256"))
    results, seconds = gx_validate(context, table, expectations, "labels")

    null_label = results[0].result.get("unexpected_index_list") or []
    unknown = results[1].result.get("unexpected_index_list") or []
    null_hash = (results[2].result.get("unexpected_index_list") or []) if len(results) > 2 else []
    columns = ("sha256", "batch", "rel_path", "label", "reviewer", "source")
    failures: list[dict] = []
    for index, row in zip(unknown, as_records(table.loc[unknown], columns)):
        hint = difflib.get_close_matches(str(row["label"]), taxonomy, n=1)
        failures.append(
            {
                "problem": "label not in taxonomy",
                "suggestion": hint[0] if hint else None,
                "row": int(index),
                **row,
            }
        )
    failures += [
        {"problem": "label is missing", "row": int(i), **row}
        for i, row in zip(null_label, as_records(table.loc[null_label], columns))
    ]
    failures += [
        {"problem": "image hash (sha256) is missing", "row": int(i), **row}
        for i, row in zip(null_hash, as_records(table.loc[null_hash], columns))
    ]

    parts = []
    if unknown:
        counts = table.loc[unknown, "label"].value_counts()
        described = []
        for label, count in counts.head(MAX_EXAMPLES).items():
            first = where_of(table.loc[table.index.isin(unknown) & (table["label"] == label)].iloc[0])
            hint = difflib.get_close_matches(str(label), taxonomy, n=1)
            maybe = f", did you mean {hint[0]!r}?" if hint else ""
            described.append(f"{label!r} x{count} (first: {first}{maybe})")
        parts.append(
            f"{len(unknown)} of {len(table)} label rows use classes outside the taxonomy "
            f"[{', '.join(taxonomy)}]: {'; '.join(described)}; fix the labels or add the classes to "
            f"the variant (mfgv variant add-class)"
        )
    if null_label:
        first = [where_of(table.loc[i]) for i in null_label[:MAX_EXAMPLES]]
        parts.append(f"{len(null_label)} label rows have no label (first: {some_examples(first)}); fill them in")
    if null_hash:
        first = [where_of(table.loc[i]) for i in null_hash[:MAX_EXAMPLES]]
        parts.append(
            f"{len(null_hash)} label rows have no image hash (first: {some_examples(first)}); join the "
            f"labels to the ingested images before checking"
        )
    passed = not parts
    summary = (
        "; ".join(parts)
        if parts
        else f"all {len(table)} label rows use the taxonomy [{', '.join(taxonomy)}]"
    )
    return CheckOutcome(
        name="labels_in_taxonomy",
        passed=passed,
        summary=summary,
        failures=failures,
        metrics={
            "n_label_rows": len(table),
            "n_labels_outside_taxonomy": len(unknown),
            "n_missing_labels": len(null_label),
            "n_missing_hashes": len(null_hash),
            "gx_validation_seconds": round(seconds, 4),
        },
    )


def no_conflicting_duplicates(labels: pd.DataFrame) -> CheckOutcome:
    """The same image content is not labelled differently at different paths.

    A picture copied into two class folders (or two batches) would be a training example for both
    classes and, after the split, a test image whose answer is in the training set. Each path gets its
    own majority label first, so a reviewer disagreement on one path is left to
    ``reviewer_agreement``; only paths that disagree with each other are reported here.
    """
    require_columns(labels, ("sha256", "rel_path", "label"), "labels")
    location = ["batch", "rel_path"] if "batch" in labels.columns else ["rel_path"]
    valid = labels.loc[labels["sha256"].notna() & labels["label"].notna()]
    if "reviewer" in valid.columns:
        valid = valid.drop_duplicates(["sha256", *location, "reviewer", "label"])
    per_path = majority_labels(valid[["sha256", *location, "label"]], ["sha256", *location])
    n_paths = per_path.groupby("sha256")["label"].transform("size")
    n_labels = per_path.groupby("sha256")["label"].transform("nunique")
    duplicated = per_path.loc[n_paths > 1]
    conflicting = per_path.loc[(n_paths > 1) & (n_labels > 1)].sort_values(["sha256", *location])
    failures = as_records(conflicting, ("sha256", *location, "label"))
    n_conflicts = int(conflicting["sha256"].nunique())
    metrics: dict[str, float | int] = {
        "n_duplicated_images": int(duplicated["sha256"].nunique()),
        "n_conflicting_images": n_conflicts,
    }
    if not n_conflicts:
        return CheckOutcome(
            name="no_conflicting_duplicates",
            passed=True,
            summary=(
                f"no image content carries different labels ({metrics['n_duplicated_images']} images "
                f"appear under several paths with one label)"
            ),
            failures=[],
            metrics=metrics,
        )
    described = []
    for sha256, group in itertools.islice(conflicting.groupby("sha256", sort=True), MAX_EXAMPLES):
        paths = ", ".join(f"{where_of(r)}={r['label']}" for r in as_records(group, (*location, "label")))
        described.append(f"{str(sha256)[:12]}: {paths}")
    more = f"; and {n_conflicts - MAX_EXAMPLES} more" if n_conflicts > MAX_EXAMPLES else ""
    return CheckOutcome(
        name="no_conflicting_duplicates",
        passed=False,
        summary=(
            f"{n_conflicts} image(s) appear under several paths with different labels "
            f"({'; '.join(described)}{more}); keep one copy with the correct label and delete the others"
        ),
        failures=failures,
        metrics=metrics,
    )


def _kappa(a: pd.Series, b: pd.Series) -> float:
    """Cohen's kappa; 1.0 when the two reviewers agree on every image (sklearn returns NaN when
    both used a single class, which is still perfect agreement)."""
    from sklearn.metrics import cohen_kappa_score

    if (a.to_numpy() == b.to_numpy()).all():
        return 1.0
    classes = sorted(set(a) | set(b))
    return float(cohen_kappa_score(a.to_numpy(), b.to_numpy(), labels=classes))


def reviewer_agreement(labels: pd.DataFrame, min_kappa: float) -> CheckOutcome:
    """Cohen's kappa for each pair of reviewers over the images both labelled.

    Raw agreement flatters a dataset that is mostly "good"; kappa corrects for chance, so it exposes
    reviewers who disagree on the rare defect classes. ``failures`` lists every image on which
    reviewers disagree, also when the check passes, because those are the images to re-review next.
    A pair with no image in common is reported but cannot fail the check.
    """
    require_columns(labels, ("sha256", "rel_path", "label", "reviewer"), "labels")
    valid = labels.loc[labels["sha256"].notna() & labels["label"].notna() & labels["reviewer"].notna()]
    reviewers = sorted(valid["reviewer"].astype(str).unique())
    if len(reviewers) <= 1:
        who = f"single reviewer ({reviewers[0]})" if reviewers else "no reviewed labels"
        return CheckOutcome(
            name="reviewer_agreement",
            passed=True,
            summary=f"{who}, agreement not measurable",
            failures=[],
            metrics={"n_reviewers": len(reviewers)},
        )
    votes = valid.drop_duplicates(["sha256", "reviewer", "label"])
    per_reviewer = majority_labels(votes[["sha256", "reviewer", "label"]], ["sha256", "reviewer"])
    grid = per_reviewer.pivot(index="sha256", columns="reviewer", values="label").sort_index()
    first_path = valid.sort_values(["sha256", "rel_path"]).drop_duplicates("sha256").set_index("sha256")

    metrics: dict[str, float | int] = {"n_reviewers": len(reviewers)}
    low: list[str] = []
    unmeasured: list[str] = []
    kappas: list[float] = []
    for a, b in itertools.combinations(reviewers, 2):
        both = grid[[a, b]].dropna()
        pair = f"{metric_key(a)}_vs_{metric_key(b)}"
        metrics[f"shared_images_{pair}"] = len(both)
        if both.empty:
            unmeasured.append(f"{a} vs {b}")
            continue
        kappa = _kappa(both[a], both[b])
        metrics[f"kappa_{pair}"] = round(kappa, 4)
        kappas.append(kappa)
        if kappa < min_kappa:
            low.append(f"{a} vs {b} kappa={kappa:.2f} over {len(both)} images")
    if kappas:
        metrics["min_kappa"] = round(min(kappas), 4)
    metrics["min_kappa_threshold"] = min_kappa

    labelled_by = grid.notna().sum(axis=1)
    distinct = grid.nunique(axis=1)
    disagree = grid.loc[(labelled_by > 1) & (distinct > 1)]
    failures = []
    for sha256, row in disagree.iterrows():
        failures.append(
            {
                "sha256": sha256,
                "rel_path": first_path.loc[sha256, "rel_path"],
                "batch": first_path.loc[sha256, "batch"] if "batch" in first_path.columns else None,
                "labels": {r: row[r] for r in reviewers if pd.notna(row[r])},
            }
        )
    metrics["n_disagreements"] = len(failures)
    examples = [
        f"{f['rel_path']} (" + ", ".join(f"{r}={lab}" for r, lab in f["labels"].items()) + ")"
        for f in failures[:MAX_EXAMPLES]
    ]
    note = f"; no shared images for {', '.join(unmeasured)}" if unmeasured else ""
    if low:
        summary = (
            f"reviewer agreement below kappa {min_kappa}: {'; '.join(low)}; {len(failures)} image(s) "
            f"disagree (first: {some_examples(examples)}); re-review those images and align the reviewers "
            f"on the class definitions{note}"
        )
    else:
        lowest = f"lowest kappa {min(kappas):.2f}" if kappas else "no pair shares an image"
        summary = (
            f"{len(reviewers)} reviewers, {lowest} (threshold {min_kappa}); {len(failures)} image(s) "
            f"disagree{note}"
        )
    return CheckOutcome(
        name="reviewer_agreement", passed=not low, summary=summary, failures=failures, metrics=metrics
    )


# The parameter of run_all shadows the function's name; keep a handle on the function.
_min_images_check = min_images_per_class





def run_all(
    images: pd.DataFrame,
    labels: pd.DataFrame,
    classes: Sequence[str],
    *,
    min_images_per_class: int,
    min_kappa: float,
    good_only: str | None = None,
    task_counts: "TaskCounts | None" = None,
) -> dict[str, CheckOutcome]:
    """Every label check, keyed by check name, with one great-expectations context for the call
    (``good_only``: see :func:`min_images_per_class`)."""
    context = new_gx_context()
    consensus = consensus_labels(labels)
    outcomes = [
        every_image_labelled(images, labels),
        labels_in_taxonomy(labels, classes, context=context),
        no_conflicting_duplicates(labels),
        _min_images_check(consensus, classes, min_images_per_class, good_only, task_counts),
        reviewer_agreement(labels, min_kappa),
    ]
    for outcome in outcomes:
        logger.log(
            logging.INFO if outcome.passed else logging.WARNING,
            "%s: %s",
            outcome.name,
            outcome.summary,
        )
    return {outcome.name: outcome for outcome in outcomes}
