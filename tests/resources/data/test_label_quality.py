"""Label checks: consensus, coverage, taxonomy (great-expectations), duplicates, balance, agreement."""

import pandas as pd
import pytest

from resources.data import label_quality
from resources.data.label_quality import (
    CheckOutcome,
    consensus_labels,
    every_image_labelled,
    labels_in_taxonomy,
    min_images_per_class,
    new_gx_context,
    no_conflicting_duplicates,
    reviewer_agreement,
    run_all,
)

CLASSES = ("good", "scratch", "dent")


@pytest.fixture(scope="module")
def gx_context():
    """One great-expectations context for the module: creating one is cheap, importing GX is not."""
    return new_gx_context()


def label_rows(*rows: tuple) -> pd.DataFrame:
    """(sha256, rel_path, label, reviewer) tuples → a labels table of batch b1 from labels.csv."""
    table = pd.DataFrame(rows, columns=["sha256", "rel_path", "label", "reviewer"])
    return table.assign(batch="b1", source="csv")


def images_for(labels: pd.DataFrame) -> pd.DataFrame:
    return labels[["sha256", "batch", "rel_path"]].drop_duplicates().reset_index(drop=True)


# ------------------------------------------------------------------------------------------ consensus


def test_consensus_majority_ties_and_agreement() -> None:
    labels = label_rows(
        ("h1", "a.png", "scratch", "alice"),
        ("h1", "a.png", "scratch", "bob"),
        ("h1", "a.png", "dent", "carol"),
        ("h2", "b.png", "good", "alice"),
        ("h2", "b.png", "good", "bob"),
        ("h3", "c.png", "scratch", "alice"),
        ("h3", "c.png", "dent", "bob"),
        ("h4", "d.png", None, "alice"),
    )
    out = consensus_labels(labels).set_index("sha256")
    assert list(out.index) == ["h1", "h2", "h3"]  # h4 has no label: reported by other checks
    assert out.loc["h1", "label"] == "scratch" and not out.loc["h1", "agreed"]
    assert out.loc["h1", "n_reviewers"] == 3 and not out.loc["h1", "tied"]
    assert out.loc["h2", "label"] == "good" and out.loc["h2", "agreed"]
    # tie: sorted label wins, and the tie is flagged
    assert out.loc["h3", "label"] == "dent" and out.loc["h3", "tied"] and not out.loc["h3", "agreed"]


def test_consensus_is_independent_of_row_order() -> None:
    labels = label_rows(
        ("h1", "a.png", "scratch", "alice"),
        ("h1", "a.png", "dent", "bob"),
        ("h2", "b.png", "good", "alice"),
    )
    forward = consensus_labels(labels)
    backward = consensus_labels(labels.iloc[::-1])
    pd.testing.assert_frame_equal(forward, backward)


def test_consensus_copies_in_one_folder_are_one_vote() -> None:
    labels = label_rows(
        ("h1", "scratch/a.png", "scratch", "folder"),
        ("h1", "scratch/a_copy.png", "scratch", "folder"),
        ("h1", "dent/a.png", "dent", "folder"),
    )
    row = consensus_labels(labels).iloc[0]
    assert row["tied"] and row["label"] == "dent" and row["n_reviewers"] == 1 and not row["agreed"]


# ------------------------------------------------------------------------------------------ coverage


def test_every_image_labelled_passes() -> None:
    labels = label_rows(("h1", "a.png", "good", "csv"))
    outcome = every_image_labelled(images_for(labels), labels)
    assert isinstance(outcome, CheckOutcome) and outcome.passed and outcome.failures == []


def test_every_image_labelled_reports_both_directions() -> None:
    images = pd.DataFrame(
        {"sha256": ["h1", "h2", "h3"], "batch": "b1", "rel_path": ["cam1/1.png", "cam1/2.png", "cam1/3.png"]}
    )
    labels = label_rows(
        ("h1", "cam1/1.png", "good", "csv"),
        (None, "cam2/0013.png", "dent", "csv"),
        ("h3", "cam1/3.png", None, "csv"),  # a row with no label does not label the image
    )
    outcome = every_image_labelled(images, labels)
    assert not outcome.passed
    assert "2 of 3 images have no label (first: b1/cam1/2.png, b1/cam1/3.png)" in outcome.summary
    assert "labels.csv names b1/cam2/0013.png but no such image was ingested" in outcome.summary
    problems = sorted((f["problem"], f["rel_path"]) for f in outcome.failures)
    assert problems == [
        ("image has no label", "cam1/2.png"),
        ("image has no label", "cam1/3.png"),
        ("label names an image that was not ingested", "cam2/0013.png"),
    ]
    assert outcome.metrics == {"n_images": 3, "n_unlabelled_images": 2, "n_labels_without_image": 1}


def test_checks_reject_tables_without_required_columns() -> None:
    with pytest.raises(ValueError, match=r"labels table is missing column\(s\) \['label'\]"):
        every_image_labelled(pd.DataFrame({"rel_path": []}), pd.DataFrame({"rel_path": []}))


# ------------------------------------------------------------------------------------------ taxonomy


def test_labels_in_taxonomy_passes(gx_context) -> None:
    labels = label_rows(("h1", "a.png", "good", "csv"), ("h2", "b.png", "dent", "csv"))
    outcome = labels_in_taxonomy(labels, CLASSES, context=gx_context)
    assert outcome.passed, outcome.summary
    assert outcome.metrics["gx_validation_seconds"] >= 0


def test_labels_in_taxonomy_reports_unknown_missing_and_case(gx_context) -> None:
    labels = label_rows(
        ("h1", "a.png", "good", "csv"),
        ("h2", "b.png", "scrach", "csv"),
        ("h3", "c.png", "scrach", "csv"),
        ("h4", "d.png", "Dent", "csv"),  # case-sensitive: not "dent"
        ("h5", "e.png", None, "csv"),
        (None, "f.png", "good", "csv"),
    )
    outcome = labels_in_taxonomy(labels, CLASSES, context=gx_context)
    assert not outcome.passed
    summary = outcome.summary
    assert "3 of 6 label rows use classes outside the taxonomy [good, scratch, dent]" in summary
    assert "'scrach' x2 (first: b1/b.png, did you mean 'scratch'?)" in summary
    assert "fix the labels or add the classes to the variant" in summary
    assert "1 label rows have no label (first: b1/e.png)" in summary
    assert "1 label rows have no image hash (first: b1/f.png)" in summary
    by_problem = {}
    for failure in outcome.failures:
        by_problem.setdefault(failure["problem"], []).append(failure["rel_path"])
    assert by_problem == {
        "label not in taxonomy": ["b.png", "c.png", "d.png"],
        "label is missing": ["e.png"],
        "image hash (sha256) is missing": ["f.png"],
    }
    assert outcome.metrics["n_labels_outside_taxonomy"] == 3


def test_labels_in_taxonomy_reuses_a_context(gx_context) -> None:
    labels = label_rows(("h1", "a.png", "good", "csv"))
    first = labels_in_taxonomy(labels, CLASSES, context=gx_context)
    second = labels_in_taxonomy(labels.assign(label="bad"), CLASSES, context=gx_context)
    assert first.passed and not second.passed


# ---------------------------------------------------------------------------------------- duplicates


def test_conflicting_duplicates_copied_into_two_class_folders() -> None:
    labels = label_rows(
        ("h1", "scratch/a.png", "scratch", "folder"),
        ("h1", "dent/a.png", "dent", "folder"),
        ("h2", "good/b.png", "good", "folder"),
        ("h2", "good/b_copy.png", "good", "folder"),  # duplicate, same label: fine
    )
    outcome = no_conflicting_duplicates(labels)
    assert not outcome.passed
    assert "1 image(s) appear under several paths with different labels" in outcome.summary
    assert "b1/dent/a.png=dent, b1/scratch/a.png=scratch" in outcome.summary
    assert "keep one copy" in outcome.summary
    assert sorted(f["rel_path"] for f in outcome.failures) == ["dent/a.png", "scratch/a.png"]
    assert outcome.metrics == {"n_duplicated_images": 2, "n_conflicting_images": 1}


def test_conflicting_duplicates_across_batches() -> None:
    labels = pd.concat(
        [
            label_rows(("h1", "a.png", "good", "csv")),
            label_rows(("h1", "a.png", "dent", "csv")).assign(batch="b2"),
        ]
    )
    outcome = no_conflicting_duplicates(labels)
    assert not outcome.passed and {f["batch"] for f in outcome.failures} == {"b1", "b2"}


def test_reviewer_disagreement_on_one_path_is_not_a_duplicate() -> None:
    labels = label_rows(("h1", "a.png", "good", "alice"), ("h1", "a.png", "dent", "bob"))
    assert no_conflicting_duplicates(labels).passed


# ------------------------------------------------------------------------------------------- balance


def consensus_of(counts: dict[str, int]) -> pd.DataFrame:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"sha256": [f"h{i}" for i in range(len(labels))], "label": labels})


def test_min_images_per_class_passes() -> None:
    outcome = min_images_per_class(consensus_of({"good": 5, "scratch": 5, "dent": 5}), CLASSES, 5)
    assert outcome.passed and outcome.metrics["images_good"] == 5


def test_min_images_per_class_too_few_and_empty_class() -> None:
    outcome = min_images_per_class(consensus_of({"good": 10, "scratch": 2}), CLASSES, 5)
    assert not outcome.passed
    assert "2 of 3 classes have fewer than 5 images (scratch=2, dent=0)" in outcome.summary
    assert {f["class"]: f["problem"] for f in outcome.failures} == {
        "scratch": "too few images",
        "dent": "empty class",
    }
    assert outcome.metrics["images_dent"] == 0 and outcome.metrics["n_classes_present"] == 2


def test_min_images_per_class_empty_class_fails_even_with_minimum_zero() -> None:
    outcome = min_images_per_class(consensus_of({"good": 3, "scratch": 3}), CLASSES, 0)
    assert not outcome.passed and "dent=0" in outcome.summary


def test_min_images_per_class_one_class_dataset() -> None:
    outcome = min_images_per_class(consensus_of({"good": 50}), ("good", "scratch"), 1)
    assert not outcome.passed
    assert "only 'good' is present: a classifier needs at least two classes" in outcome.summary
    outcome = min_images_per_class(consensus_of({"good": 50}), ("good",), 1)
    assert not outcome.passed and "at least two classes" in outcome.summary


# ----------------------------------------------------------------------------------------- agreement


def two_reviewers(bob_labels: list[str]) -> pd.DataFrame:
    alice = ["good", "good", "scratch", "scratch", "dent", "dent", "good", "scratch"]
    rows = [(f"h{i}", f"cam1/{i}.png", lab, "alice") for i, lab in enumerate(alice)]
    rows += [(f"h{i}", f"cam1/{i}.png", lab, "bob") for i, lab in enumerate(bob_labels)]
    return label_rows(*rows)


def test_reviewer_agreement_perfect_passes() -> None:
    labels = two_reviewers(["good", "good", "scratch", "scratch", "dent", "dent", "good", "scratch"])
    outcome = reviewer_agreement(labels, min_kappa=0.8)
    assert outcome.passed, outcome.summary
    assert outcome.metrics["kappa_alice_vs_bob"] == 1.0 and outcome.metrics["min_kappa"] == 1.0
    assert outcome.failures == []


def test_reviewer_agreement_low_kappa_fails_and_lists_disagreements() -> None:
    labels = two_reviewers(["dent", "scratch", "good", "scratch", "good", "dent", "scratch", "good"])
    outcome = reviewer_agreement(labels, min_kappa=0.6)
    assert not outcome.passed
    assert outcome.metrics["kappa_alice_vs_bob"] < 0.6
    assert outcome.metrics["min_kappa"] == outcome.metrics["kappa_alice_vs_bob"]
    assert outcome.metrics["min_kappa_threshold"] == 0.6
    assert "alice vs bob kappa=" in outcome.summary and "re-review" in outcome.summary
    assert len(outcome.failures) == 6 == outcome.metrics["n_disagreements"]
    first = outcome.failures[0]
    assert first == {"sha256": "h0", "rel_path": "cam1/0.png", "batch": "b1", "labels": {"alice": "good", "bob": "dent"}}


def test_reviewer_agreement_single_reviewer_is_not_measurable() -> None:
    labels = label_rows(("h1", "a.png", "good", "csv"), ("h2", "b.png", "dent", "csv"))
    outcome = reviewer_agreement(labels, min_kappa=0.9)
    assert outcome.passed and outcome.summary == "single reviewer (csv), agreement not measurable"


def test_reviewer_agreement_three_reviewers_and_unshared_pair() -> None:
    labels = label_rows(
        ("h1", "a.png", "good", "alice"),
        ("h1", "a.png", "good", "bob"),
        ("h2", "b.png", "dent", "alice"),
        ("h2", "b.png", "dent", "bob"),
        ("h3", "c.png", "dent", "carol"),
    )
    outcome = reviewer_agreement(labels, min_kappa=0.5)
    assert outcome.passed
    assert outcome.metrics["kappa_alice_vs_bob"] == 1.0
    assert "kappa_alice_vs_carol" not in outcome.metrics
    assert outcome.metrics["shared_images_bob_vs_carol"] == 0
    assert "no shared images for alice vs carol, bob vs carol" in outcome.summary


# ------------------------------------------------------------------------------------------- run_all


def test_run_all_uses_one_gx_context(monkeypatch: pytest.MonkeyPatch) -> None:
    created = []
    original = label_quality.new_gx_context

    def counting():
        created.append(1)
        return original()

    monkeypatch.setattr(label_quality, "new_gx_context", counting)
    labels = two_reviewers(["good", "good", "scratch", "scratch", "dent", "dent", "good", "scratch"])
    outcomes = run_all(images_for(labels), labels, CLASSES, min_images_per_class=2, min_kappa=0.6)
    assert len(created) == 1
    assert list(outcomes) == [
        "every_image_labelled",
        "labels_in_taxonomy",
        "no_conflicting_duplicates",
        "min_images_per_class",
        "reviewer_agreement",
    ]
    assert all(o.passed for o in outcomes.values()), {k: o.summary for k, o in outcomes.items()}



def test_an_anomaly_variant_needs_enough_good_images_and_any_number_of_defects() -> None:
    import pandas as pd

    from resources.data.label_quality import min_images_per_class

    consensus = pd.DataFrame({"sha256": [f"g{i}" for i in range(5)] + ["d0"], "label": ["good"] * 5 + ["crack"]})
    assert min_images_per_class(consensus, ["good", "crack"], 5, good_only="good").passed  # one crack is fine
    assert min_images_per_class(consensus.iloc[:5], ["good"], 5, good_only="good").passed  # good parts only
    short = min_images_per_class(consensus.iloc[2:], ["good", "crack"], 5, good_only="good")
    assert not short.passed and "good=3" in short.summary and "crack" not in short.summary
    assert not min_images_per_class(consensus, ["good", "crack"], 5).passed  # a classifier still needs 5 cracks
