"""land_feedback: feedback images stored by the sync server become a complete landing-zone batch."""

import csv
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_sync.server_state import DeviceRecord, FeedbackItem, ServerState
from resources.data.feedback import FeedbackLandingError, land_feedback, landed_keys
from resources.landing import MARKER, find_complete_batches

NOW = datetime(2026, 11, 27, 4, 5, 6, tzinfo=UTC)


def _store(state: ServerState, device: str, data: bytes, label: str, name: str = "img.png") -> str:
    sha = hashlib.sha256(data).hexdigest()
    item = FeedbackItem(
        device_id=device,
        line="line1",
        model_version="v1",
        image=name,
        sha256=sha,
        label=label,
        verdict="false_reject" if label == "good" else "escape",
        labelled_at=NOW,
    )
    # straight into the feedback store: landing is tested here, not the door's checks (tests/bad_input)
    assert state._feedback.record_feedback(item, data, DeviceRecord(device, "line1", False), NOW)
    return sha


@pytest.fixture
def state(tmp_path: Path) -> ServerState:
    state = ServerState(tmp_path / "server")
    state.register_device("dev-1", "line1")
    state.register_device("dev-2", "line1")
    return state


def test_land_feedback_writes_a_complete_folder_per_class_batch(state: ServerState, tmp_path: Path) -> None:
    good = _store(state, "dev-1", b"good-bytes", "good", "a.png")
    scratch = _store(state, "dev-2", b"scratch-bytes", "scratch", "b.jpg")
    _store(state, "dev-2", b"good-bytes", "scratch", "a-again.png")  # same image from another device: first wins
    landing = tmp_path / "landing"

    batch = land_feedback(state, "line1", "bracket-a", landing, already_landed=set(), now=lambda: NOW)

    assert batch == landing / "line1" / "bracket-a" / "edge-feedback-20261127T040506Z"
    assert (batch / "good" / f"{good}.png").read_bytes() == b"good-bytes"
    assert (batch / "scratch" / f"{scratch}.jpg").read_bytes() == b"scratch-bytes"
    with (batch / "labels.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["path", "label", "reviewer"],
        [f"good/{good}.png", "good", "operator@dev-1"],
        [f"scratch/{scratch}.jpg", "scratch", "operator@dev-2"],
    ]
    files = [p for p in batch.rglob("*") if p.is_file()]
    marker_time = (batch / MARKER).stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= marker_time for p in files)  # the marker is written last
    assert [b.batch for b in find_complete_batches(landing)] == ["edge-feedback-20261127T040506Z"]
    assert landed_keys(batch) == {good, scratch}


def test_nothing_new_gives_none_and_already_landed_is_respected(state: ServerState, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    assert land_feedback(state, "line1", "bracket-a", landing, already_landed=set()) is None
    first = _store(state, "dev-1", b"one", "good")
    batch = land_feedback(state, "line1", "bracket-a", landing, already_landed=set(), now=lambda: NOW)
    assert batch is not None
    landed = landed_keys(batch)

    assert land_feedback(state, "line1", "bracket-a", landing, already_landed=landed) is None
    second = _store(state, "dev-1", b"two", "dent")
    later = land_feedback(
        state, "line1", "bracket-a", landing, already_landed=landed, now=lambda: NOW.replace(minute=6)
    )
    assert later is not None and landed_keys(later) == {second} and first not in landed_keys(later)
    with pytest.raises(FeedbackLandingError, match="already exists"):
        land_feedback(state, "line1", "bracket-a", landing, already_landed=set(), now=lambda: NOW)
    with pytest.raises(FeedbackLandingError, match="not a valid landing-zone name"):
        land_feedback(state, "line1", "../x", landing, already_landed=set())


def test_an_anomaly_variants_feedback_lands_in_the_mvtec_layout(state: ServerState, tmp_path: Path) -> None:
    from resources.data.mvtec_labels import labels_from_mvtec

    good = _store(state, "dev-1", b"good-bytes", "good", "a.png")
    crack = _store(state, "dev-2", b"crack-bytes", "crack", "b.png")
    batch = land_feedback(state, "line1", "cap-a", tmp_path / "landing", already_landed=set(), now=lambda: NOW,
                          mvtec_good_class="good")
    assert (batch / "train" / "good" / f"{good}.png").read_bytes() == b"good-bytes"  # confirmed good: trained on
    assert (batch / "test" / "crack" / f"{crack}.png").read_bytes() == b"crack-bytes"
    paths = sorted(p.relative_to(batch).as_posix() for p in batch.rglob("*.png"))
    assert set(labels_from_mvtec(paths).labels["label"]) == {"good", "crack"}  # the layout the variant reads
    assert landed_keys(batch) == {good, crack}
