"""One outbox rule for every upload: windows and feedback images treat each answer the same way."""

import json
from pathlib import Path

import httpx
import pytest

from edge_sync.agent.feedback import read_feedback_entry
from edge_sync.agent.outbox import Disposition, Entry, Outbox, disposition


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Disposition.DONE),
        (201, Disposition.DONE),
        (401, Disposition.UNAUTHORISED),
        (403, Disposition.UNAUTHORISED),
        (408, Disposition.RETRY),
        (429, Disposition.RETRY),
        (500, Disposition.RETRY),
        (503, Disposition.RETRY),
        (400, Disposition.REJECTED),
        (413, Disposition.REJECTED),
        (422, Disposition.REJECTED),
    ],
)
def test_disposition_of_each_answer(status: int, expected: Disposition) -> None:
    assert disposition(status) is expected


def _window_outbox(folder: Path) -> Outbox:
    def read(path: Path) -> Entry:
        return Entry(name=path.stem, body=path.read_bytes(), files=(path,))

    return Outbox(folder, kind="window", url="http://sync.test/v1/metrics", read=read, device_id="cam-1")


def _feedback_outbox(folder: Path) -> Outbox:
    return Outbox(folder, kind="feedback image", url="http://sync.test/v1/feedback", read=read_feedback_entry, device_id="cam-1")


def _queue(kind: str, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "window":
        (folder / f"{name}.json").write_text(json.dumps({"window_id": name}))
    else:
        sha = (name * 64)[:64]
        (folder / f"{sha}.png").write_bytes(b"png")
        (folder / f"{sha}.json").write_text(json.dumps({"sha256": sha, "image": f"{name}.png"}))


@pytest.mark.parametrize("kind", ["window", "feedback"])
@pytest.mark.parametrize(
    ("status", "left", "quarantined"), [(401, 2, 0), (403, 2, 0), (503, 2, 0), (201, 0, 0), (422, 0, 2)]
)
def test_both_outboxes_keep_delete_or_quarantine_alike(tmp_path: Path, kind: str, status: int, left: int, quarantined: int) -> None:
    folder = tmp_path / kind
    for name in ("a", "b"):
        _queue(kind, folder, name)
    outbox = _window_outbox(folder) if kind == "window" else _feedback_outbox(folder)
    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(status, text="answer")))

    uploaded = outbox.flush(client, {"Authorization": "Bearer t"})

    assert uploaded == (2 if status == 201 else 0)
    assert outbox.count() == left
    assert len(list((folder / "rejected").glob("*.json"))) == quarantined
