"""Bad-input corpus, device uploads: every hostile or broken metric window and feedback upload is
refused at the door with the status and a message naming what is wrong, and nothing of it is stored.

Each case is one kind of bad upload a broken device (or a hostile client with a device token) sends;
the server is the real app (``create_app``) behind a ``TestClient`` over a real state folder.
"""

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from edge_sync.server import MAX_BODY_BYTES, create_app
from tests.edge_sync.test_server import VERSION, Fleet, _window_json

NOW = datetime.now(UTC)


@dataclass(frozen=True)
class Upload:
    """One bad upload: the endpoint, a body builder, the expected status and a fragment of the answer."""

    name: str
    path: str
    body: Callable[[], dict]
    status: int
    fragment: str


def _window(**update: object) -> dict:
    ended = NOW - timedelta(minutes=1)
    base = {"started_at": (ended - timedelta(minutes=5)).isoformat(), "ended_at": ended.isoformat()}
    return _window_json(**{**base, **update})


def _counts(inspected: int, **update: object) -> dict:
    """A window whose histograms add up to ``inspected`` (so only the named fault is wrong)."""
    return _window(
        inspected=inspected,
        rejected=0,
        score_histogram=[inspected] + [0] * 19,
        input_brightness_histogram=[inspected] + [0] * 15,
        **update,
    )


def _feedback(data: bytes = b"part-image", **update: object) -> dict:
    body = {
        "device_id": "cam-01",
        "line": "line1",
        "model_version": VERSION,
        "image": "a.png",
        "sha256": hashlib.sha256(data).hexdigest(),
        "label": "scratch",
        "verdict": "escape",
        "labelled_at": (NOW - timedelta(minutes=1)).isoformat(),
        "image_base64": base64.b64encode(data).decode(),
    }
    return {**body, **update}


CASES = [
    # metric windows: counts
    Upload("window inspected 10**30", "/v1/metrics", lambda: _counts(10**30), 422, "inspected"),
    Upload("window inspected 1e18", "/v1/metrics", lambda: _counts(10**18), 422, "inspected"),
    Upload("window rejected > inspected", "/v1/metrics", lambda: _window(rejected=101), 422, "rejected 101 > inspected 100"),
    Upload("window negative count", "/v1/metrics", lambda: _window(false_rejects=-1), 422, "false_rejects"),
    Upload("window fractional count", "/v1/metrics", lambda: _window(inspected=99.5), 422, "inspected"),
    Upload("window count as text", "/v1/metrics", lambda: _window(escapes_found="many"), 422, "escapes_found"),
    Upload("window verdicts 10**12", "/v1/metrics", lambda: _window(confirmed_defects=10**12), 422, "confirmed_defects"),
    Upload("window histogram not adding up", "/v1/metrics", lambda: _window(score_histogram=[1] * 20), 422, "adds up to 20"),
    Upload("window histogram of wrong length", "/v1/metrics", lambda: _window(score_histogram=[1, 2, 3]), 422, "score_histogram"),
    Upload("window negative histogram bin", "/v1/metrics", lambda: _window(input_brightness_histogram=[-1] * 15 + [115]), 422, "non-negative"),
    # metric windows: times
    Upload(
        "window ended before it started",
        "/v1/metrics",
        lambda: _window(started_at=NOW.isoformat(), ended_at=(NOW - timedelta(hours=1)).isoformat()),
        422,
        "before started_at",
    ),
    Upload(
        "window in year 9999",
        "/v1/metrics",
        lambda: _window(started_at="9999-12-31T23:00:00+00:00", ended_at="9999-12-31T23:59:00+00:00"),
        422,
        "ahead of the server's clock",
    ),
    Upload(
        "window from 1970",
        "/v1/metrics",
        lambda: _window(started_at="1970-01-01T00:00:00+00:00", ended_at="1970-01-01T00:05:00+00:00"),
        422,
        "days before the server's clock",
    ),
    Upload(
        "window spanning a month",
        "/v1/metrics",
        lambda: _window(started_at=(NOW - timedelta(days=31)).isoformat()),
        422,
        "over 7 days",
    ),
    Upload("window timestamp not a time", "/v1/metrics", lambda: _window(ended_at="yesterday"), 422, "ended_at"),
    Upload(
        "window without UTC offset",
        "/v1/metrics",
        lambda: _window(started_at="2026-12-01T10:00:00", ended_at="2026-12-01T10:05:00"),
        422,
        "UTC offset",
    ),
    # metric windows: names
    Upload("window of a model never deployed", "/v1/metrics", lambda: _window(model_version="line1-bracket-a-v99"), 422, "never deployed"),
    Upload("window of another line's model", "/v1/metrics", lambda: _window(model_version="line2-v1"), 422, "never deployed"),
    Upload("window model version with a slash", "/v1/metrics", lambda: _window(model_version="../v1"), 422, "model_version"),
    Upload("window with an unknown field", "/v1/metrics", lambda: _window(rejects_total=3), 422, "rejects_total"),
    Upload("window missing a field", "/v1/metrics", lambda: {k: v for k, v in _window().items() if k != "inspected"}, 422, "inspected"),
    Upload("window of another device", "/v1/metrics", lambda: _window(device_id="cam-09", line="line2"), 403, "only its own"),
    # feedback
    Upload("feedback label outside the taxonomy", "/v1/feedback", lambda: _feedback(label="bogus_class"), 422, "not a class of model"),
    Upload("feedback of a model never deployed", "/v1/feedback", lambda: _feedback(model_version="line1-bracket-a-v99"), 422, "never deployed"),
    Upload(
        "feedback labelled in year 9999", "/v1/feedback", lambda: _feedback(labelled_at="9999-01-01T00:00:00+00:00"), 422, "ahead of the server's clock"
    ),
    Upload("feedback bytes not matching sha256", "/v1/feedback", lambda: _feedback(sha256="0" * 64), 422, "declares"),
    Upload("feedback image not base64", "/v1/feedback", lambda: _feedback(image_base64="not base64!"), 422, "not valid base64"),
    Upload("feedback image a path", "/v1/feedback", lambda: _feedback(image="../../etc/passwd.png"), 422, "plain file name"),
    Upload("feedback unknown verdict", "/v1/feedback", lambda: _feedback(verdict="maybe"), 422, "verdict"),
    Upload("feedback label a path", "/v1/feedback", lambda: _feedback(label="../good"), 422, "label"),
]


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_upload_is_refused_and_nothing_is_stored(case: Upload, fleet: Fleet) -> None:
    client = TestClient(create_app(fleet.state))
    response = client.post(case.path, json=case.body(), headers=fleet.auth())
    assert response.status_code == case.status, response.text
    assert case.fragment in response.text, response.text
    assert fleet.state.windows() == [] and fleet.state.feedback("line1") == []


def test_a_good_window_and_feedback_still_land(fleet: Fleet) -> None:
    """The builders above are right but for the one fault each case injects."""
    client = TestClient(create_app(fleet.state))
    assert client.post("/v1/metrics", json=_window(), headers=fleet.auth()).status_code == 201
    assert client.post("/v1/metrics", json=_counts(10**6, window_id="w-0002"), headers=fleet.auth()).status_code == 201
    assert client.post("/v1/feedback", json=_feedback(), headers=fleet.auth()).status_code == 201
    assert len(fleet.state.windows()) == 2 and len(fleet.state.feedback("line1")) == 1


def test_an_oversized_body_is_refused_before_it_is_read(fleet: Fleet) -> None:
    client = TestClient(create_app(fleet.state))
    huge = b'{"window_id": "' + b"x" * (100 * 1024 * 1024) + b'"}'
    response = client.post("/v1/metrics", content=huge, headers=fleet.auth() | {"Content-Type": "application/json"})
    assert response.status_code == 413 and f"limit of {MAX_BODY_BYTES}" in response.text
    assert len(response.content) < 1000


def test_a_body_without_length_is_refused(fleet: Fleet) -> None:
    client = TestClient(create_app(fleet.state))
    chunks = iter([b'{"window_id": ', b'"w"}'])
    response = client.post("/v1/metrics", content=chunks, headers=fleet.auth() | {"Content-Type": "application/json"})
    assert response.status_code == 411 and "Content-Length" in response.text


def test_a_refusal_does_not_echo_the_body(fleet: Fleet) -> None:
    client = TestClient(create_app(fleet.state))
    body = _window(window_id="w" * 150, model_version="v" * 40_000)
    response = client.post("/v1/metrics", json=body, headers=fleet.auth())
    assert response.status_code == 422 and len(response.content) < 4000, len(response.content)


def test_malformed_json_is_422_not_500(fleet: Fleet) -> None:
    client = TestClient(create_app(fleet.state))
    response = client.post("/v1/metrics", content=b"{not json", headers=fleet.auth() | {"Content-Type": "application/json"})
    assert response.status_code == 422 and "fix the agent" in response.text
