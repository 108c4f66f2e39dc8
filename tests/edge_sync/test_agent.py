"""The edge agent against an in-memory sync server: activation and its refusals, resumable downloads,
inspection, feedback, metric windows and their outbox, rollback and restarts.

A real package is built once per module: a from-scratch resnet10t (2 classes, 32 px) exported with the
platform's exporter, its ``selftest.npz`` from torch, manifests signed with a fresh ed25519 key. The
server is an ``httpx.MockTransport`` implementing the three endpoints (manifest, packages with
``Range``, metrics); nothing leaves the process.
"""

import errno
import hashlib
import io
import json
import logging
import re
import socket
import threading
import time
from collections import namedtuple
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import httpx
import numpy as np
import pytest

from tests.deployable import deployable_model, smooth_images
from PIL import Image

import edge_sync.agent.download as download_module
from edge_sync.agent import (
    ACTIVE_FILE,
    AgentConfig,
    AgentError,
    DownloadError,
    EdgeAgent,
    main,
)
from edge_sync.contract import (
    DeploymentManifest,
    InputSpec,
    MetricWindow,
    ModelFile,
    SignedManifest,
    canonical_json,
    generate_keypair,
    load_private_key,
    sign_manifest,
)
from edge_sync.inference import load_predictor

SIZE = 32
CLASSES = ("good", "defect")
TOKEN = "tok-dev-1"
SERVER = "http://sync.test"
# A fixed hour of yesterday: the real server takes windows and verdicts only near its own clock.
START = (datetime.now(UTC) - timedelta(days=1)).replace(hour=4, minute=0, second=0, microsecond=0)


# ------------------------------------------------------------------------------------------ fixtures


@dataclass(frozen=True)
class Artifacts:
    model: bytes
    model_path: Path
    selftest: bytes
    private_key: Path
    public_key: Path
    other_private_key: Path


def _smooth_images(n: int, seed: int) -> np.ndarray:
    return smooth_images(n, SIZE, seed)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    import torch

    from edge_sync.inference import preprocess
    from resources.classify.exporter import export_onnx

    folder = tmp_path_factory.mktemp("package")
    model = deployable_model(0, len(CLASSES))
    model_path = export_onnx(model, SIZE, folder / "model.onnx")
    images = _smooth_images(8, seed=1)
    with torch.inference_mode():
        probabilities = model(torch.from_numpy(preprocess(images))).numpy().astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, images=images, probabilities=probabilities)
    generate_keypair(folder / "platform.key", folder / "platform.pub")
    generate_keypair(folder / "other.key", folder / "other.pub")
    return Artifacts(
        model=model_path.read_bytes(),
        model_path=model_path,
        selftest=buffer.getvalue(),
        private_key=folder / "platform.key",
        public_key=folder / "platform.pub",
        other_private_key=folder / "other.key",
    )


def _package(art: Artifacts) -> dict[str, bytes]:
    return {"model.onnx": art.model, "selftest.npz": art.selftest}


def _manifest(version: str, files: dict[str, bytes], **fields: object) -> DeploymentManifest:
    values: dict[str, object] = {
        "deployment_id": f"line1-{version}",
        "line": "line1",
        "model_version": version,
        "model_format": "onnx",
        "model_path": "model.onnx",
        "files": tuple(
            ModelFile(path=path, sha256=hashlib.sha256(data).hexdigest(), n_bytes=len(data))
            for path, data in files.items()
        ),
        "input": InputSpec(height=SIZE, width=SIZE),
        "classes": CLASSES,
        "good_class": "good",
        "threshold": 0.5,
        "dataset_version": "ds-1",
        "created_at": START,
    }
    values.update(fields)
    return DeploymentManifest(**values)


def _signed(art: Artifacts, version: str, files: dict[str, bytes] | None = None, **fields: object) -> SignedManifest:
    files = _package(art) if files is None else files
    return sign_manifest(_manifest(version, files, **fields), load_private_key(art.private_key))


class _CutStream(httpx.SyncByteStream):
    """A body that breaks off like a server restarting mid-transfer."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self._data
        raise httpx.ReadError("connection reset by peer")


class FakeServer:
    """The sync server's three endpoints, in memory, with knobs for failures."""

    def __init__(self) -> None:
        self.signed: SignedManifest | None = None
        self.files: dict[tuple[str, str], bytes] = {}
        self.etags: dict[tuple[str, str], str] = {}
        self.metrics: dict[str, dict] = {}
        self.stored_posts: list[str] = []  # window ids of POSTs that reached the store
        self.requests: list[httpx.Request] = []
        self.down = False
        self.cuts: dict[str, tuple[str, int]] = {}  # path -> ("error" | "short", bytes sent), used once
        self.on_metrics: Callable[[dict], None] | None = None

    def deploy(
        self, signed: SignedManifest, files: dict[str, bytes], *, served: dict[str, bytes] | None = None
    ) -> None:
        """Publish ``signed``; ``served`` replaces bytes on the wire (tampering) but not their ETag."""
        self.signed = signed
        version = json.loads(signed.manifest_json)["model_version"]
        for path, data in files.items():
            self.files[(version, path)] = (served or {}).get(path, data)
            self.etags[(version, path)] = hashlib.sha256(data).hexdigest()

    def package_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.startswith("/v1/packages/")]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"detail": "unknown token"})
        if path == "/v1/manifest":
            if self.signed is None:
                return httpx.Response(204)
            return httpx.Response(200, json=self.signed.model_dump(mode="json"))
        if path.startswith("/v1/packages/"):
            version, _, rel = path.removeprefix("/v1/packages/").partition("/")
            key = (unquote(version), unquote(rel))
            if key not in self.files:
                return httpx.Response(404)
            data = self.files[key]
            headers = {"ETag": f'"{self.etags[key]}"', "Accept-Ranges": "bytes"}
            status, start = 200, 0
            if (wanted := request.headers.get("range")) is not None:
                start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
                if start >= len(data):
                    return httpx.Response(416, headers={"Content-Range": f"bytes */{len(data)}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            if (cut := self.cuts.pop(key[1], None)) is not None:
                kind, sent = cut
                if kind == "error":
                    return httpx.Response(status, headers=headers, stream=_CutStream(body[:sent]))
                return httpx.Response(status, headers=headers, content=body[:sent])
            return httpx.Response(status, headers=headers, content=body)
        if path == "/v1/metrics" and request.method == "POST":
            payload = json.loads(request.content)
            MetricWindow.model_validate(payload)
            if self.on_metrics is not None:
                self.on_metrics(payload)
            self.stored_posts.append(payload["window_id"])
            if payload["window_id"] in self.metrics:
                return httpx.Response(200, json={"status": "duplicate"})
            self.metrics[payload["window_id"]] = payload
            return httpx.Response(201, json={"status": "stored"})
        return httpx.Response(404)


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Env:
    art: Artifacts
    server: FakeServer
    clock: FakeClock
    camera: Path
    state: Path

    def config(self, **overrides: object) -> AgentConfig:
        values: dict[str, object] = {
            "device_id": "dev-1",
            "server_url": SERVER,
            "token": TOKEN,
            "camera_dir": self.camera,
            "state_dir": self.state,
            "public_key_path": self.art.public_key,
            "window_seconds": 60,
            "window_max_images": 200,
            "num_threads": 1,
        }
        values.update(overrides)
        return AgentConfig(**values)

    def agent(self, **overrides: object) -> EdgeAgent:
        client = httpx.Client(transport=httpx.MockTransport(self.server.handler))
        return EdgeAgent(self.config(**overrides), client=client, clock=self.clock)

    def deploy(self, version: str, **fields: object) -> SignedManifest:
        signed = _signed(self.art, version, **fields)
        self.server.deploy(signed, _package(self.art))
        return signed

    def active_record(self) -> dict:
        return json.loads((self.state / ACTIVE_FILE).read_text())

    def outbox(self) -> list[Path]:
        return sorted((self.state / "outbox").glob("*.json"))


@pytest.fixture
def env(artifacts: Artifacts, tmp_path: Path) -> Env:
    camera = tmp_path / "camera"
    camera.mkdir()
    return Env(artifacts, FakeServer(), FakeClock(), camera, tmp_path / "state")


def _write_image(path: Path, seed: int, *, size: tuple[int, int] = (48, 40), mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 3)
    pixels = np.clip(base + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)


# ------------------------------------------------------------------------------------------ activation


def test_activation_happy_path(env: Env) -> None:
    agent = env.agent()
    assert agent.active_version is None
    assert agent.sync_once().status == "no_deployment"

    env.deploy("v1")
    outcome = agent.sync_once()

    assert (outcome.status, outcome.model_version) == ("activated", "v1")
    assert agent.active_version == "v1"
    record = env.active_record()
    assert (record["active"], record["previous"]) == ("v1", None)
    assert (env.state / "models" / "v1" / "package" / "model.onnx").read_bytes() == env.art.model
    assert not list((env.state / "models").glob("*.partial"))
    assert all("range" not in r.headers for r in env.server.package_requests())
    again = agent.sync_once()
    assert (again.status, again.model_version) == ("up_to_date", "v1")
    assert len(env.server.package_requests()) == 2  # nothing fetched twice


def test_same_version_with_a_new_threshold_is_adopted_without_download(env: Env) -> None:
    env.deploy("v1")
    agent = env.agent()
    agent.sync_once()
    downloads = len(env.server.package_requests())
    env.deploy("v1", threshold=0.9, deployment_id="line1-v1-fleet")

    outcome = agent.sync_once()

    assert (outcome.status, outcome.model_version) == ("up_to_date", "v1") and "adopted" in outcome.detail
    assert len(env.server.package_requests()) == downloads
    assert env.agent().sync_once().detail == "running v1"  # the new manifest was stored and verifies


def test_unknown_token_and_server_down_keep_running(env: Env) -> None:
    env.deploy("v1")
    agent = env.agent()
    agent.sync_once()

    stranger = env.agent(token="not-a-token").sync_once()
    env.server.down = True
    unreachable = agent.sync_once()

    assert stranger.status == "refused" and "token" in stranger.detail
    assert (unreachable.status, unreachable.model_version) == ("server_unreachable", "v1")
    assert agent.active_version == "v1"


@pytest.mark.parametrize("etag_reveals_it", [False, True], ids=["tampered-in-transit", "server-serves-other-file"])
def test_tampered_file_is_refused_and_old_model_keeps_running(env: Env, etag_reveals_it: bool) -> None:
    env.deploy("v1")
    agent = env.agent()
    agent.sync_once()
    signed = _signed(env.art, "v2")
    tampered = bytearray(env.art.model)
    tampered[len(tampered) // 2] ^= 0xFF
    env.server.deploy(signed, _package(env.art), served={"model.onnx": bytes(tampered)})
    if etag_reveals_it:
        env.server.etags[("v2", "model.onnx")] = hashlib.sha256(tampered).hexdigest()

    outcome = agent.sync_once()

    assert (outcome.status, outcome.model_version) == ("refused", "v2")
    assert "sha256" in outcome.detail or "ETag" in outcome.detail
    assert agent.active_version == "v1" and env.active_record()["active"] == "v1"
    assert not (env.state / "models" / "v2").exists()
    partial = env.state / "models" / "v2.partial" / "package"
    assert not (partial / "model.onnx").exists() and not (partial / "model.onnx.part").exists()
    _write_image(env.camera / "a.png", seed=1)
    assert [d.model_version for d in agent.inspect_pending()] == ["v1"]


def test_wrong_signature_is_refused_before_downloading(env: Env) -> None:
    env.deploy("v1")
    agent = env.agent()
    agent.sync_once()
    forged = sign_manifest(_manifest("v2", _package(env.art)), load_private_key(env.art.other_private_key))
    env.server.deploy(forged, _package(env.art))
    downloads_before = len(env.server.package_requests())

    outcome = agent.sync_once()
    repeated = agent.sync_once()

    assert outcome.status == "refused" and "signature" in outcome.detail
    assert repeated.status == "refused"
    assert len(env.server.package_requests()) == downloads_before
    assert agent.active_version == "v1"


def test_altered_manifest_text_is_refused(env: Env) -> None:
    good = _signed(env.art, "v1")
    text = good.manifest_json.replace('"threshold":0.5', '"threshold":0.99')
    assert text != good.manifest_json
    altered = good.model_copy(update={"manifest_json": text})
    env.server.deploy(altered, _package(env.art))

    outcome = env.agent().sync_once()

    assert outcome.status == "refused" and "signature" in outcome.detail
    assert not env.server.package_requests()


def test_unknown_schema_version_is_refused(env: Env) -> None:
    payload = json.loads(canonical_json(_manifest("v2", _package(env.art))))
    payload["schema_version"] = 99
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    key = load_private_key(env.art.private_key)
    import base64

    signature = base64.b64encode(key.sign(text.encode())).decode()
    env.server.deploy(SignedManifest(manifest_json=text, signature=signature, key_id="k"), _package(env.art))

    outcome = env.agent().sync_once()

    assert outcome.status == "refused" and "schema version" in outcome.detail
    assert not env.server.package_requests()


def test_package_without_selftest_is_refused(env: Env) -> None:
    files = {"model.onnx": env.art.model}
    env.server.deploy(_signed(env.art, "v1", files), files)

    outcome = env.agent().sync_once()

    assert outcome.status == "refused" and "selftest.npz" in outcome.detail
    assert not env.server.package_requests()


def test_failing_selftest_is_refused_and_not_retried(env: Env) -> None:
    env.deploy("v1")
    agent = env.agent()
    agent.sync_once()
    with np.load(io.BytesIO(env.art.selftest)) as data:
        images, probabilities = data["images"], data["probabilities"]
    buffer = io.BytesIO()
    np.savez(buffer, images=images, probabilities=probabilities[:, ::-1].copy())  # another model's numbers
    files = {"model.onnx": env.art.model, "selftest.npz": buffer.getvalue()}
    env.server.deploy(_signed(env.art, "v2", files), files)

    outcome = agent.sync_once()
    downloads = len(env.server.package_requests())
    repeated = agent.sync_once()

    assert outcome.status == "refused" and "self-test" in outcome.detail
    assert repeated.status == "refused" and len(env.server.package_requests()) == downloads
    assert agent.active_version == "v1"
    assert not (env.state / "models" / "v2").exists()
    assert not (env.state / "models" / "v2.partial").exists()


@pytest.mark.parametrize("kind", ["error", "short"])
def test_download_cut_mid_file_resumes_at_next_sync(env: Env, kind: str) -> None:
    env.deploy("v1")
    cut_at = len(env.art.model) // 3
    env.server.cuts["model.onnx"] = (kind, cut_at)

    first = env.agent().sync_once()

    assert first.status == "server_unreachable" and "next sync" in first.detail
    part = env.state / "models" / "v1.partial" / "package" / "model.onnx.part"
    assert part.stat().st_size == cut_at
    assert not (env.state / ACTIVE_FILE).exists()

    second = env.agent().sync_once()  # a fresh process, as after a reboot

    assert (second.status, second.model_version) == ("activated", "v1")
    model_requests = [r for r in env.server.package_requests() if r.url.path.endswith("/model.onnx")]
    assert [r.headers.get("range") for r in model_requests] == [None, f"bytes={cut_at}-"]
    assert (env.state / "models" / "v1" / "package" / "model.onnx").read_bytes() == env.art.model


def test_disk_full_is_a_clean_error_and_leaves_no_partial(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.deploy("v1")
    agent = env.agent()
    agent.sync_once()
    env.deploy("v2")

    def full(handle: object, chunk: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download_module, "_write_chunk", full)
    with pytest.raises(DownloadError, match="no space left on the device") as raised:
        agent.sync_once()

    assert "v1 keeps running" in str(raised.value)
    assert not (env.state / "models" / "v2.partial").exists() and not (env.state / "models" / "v2").exists()
    assert agent.active_version == "v1" and env.active_record()["active"] == "v1"
    monkeypatch.undo()
    assert agent.sync_once().status == "activated"


def test_not_enough_free_space_is_refused_before_writing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.deploy("v1")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(download_module.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))

    with pytest.raises(DownloadError, match="no space left"):
        env.agent().sync_once()

    assert not env.server.package_requests()
    assert not (env.state / "models" / "v1.partial").exists()


# ------------------------------------------------------------------------------------------ inspection


def test_inspection_decides_records_and_moves_images(env: Env) -> None:
    names = ["a.png", "b.jpg", "c.png", "d.bmp", "e_grey.png"]
    for seed, name in enumerate(names):
        _write_image(env.camera / name, seed, mode="L" if "grey" in name else "RGB")
    (env.camera / "f_garbage.png").write_bytes(b"not an image at all\n" * 4)
    (env.camera / "g_notes.txt").write_text("lens cleaned\n")
    (env.camera / ".h_in_progress.png").write_bytes(b"")
    (env.camera / "i.png.tmp").write_bytes(b"")
    # Independently: decode, resize bilinearly, run the same model, score 1 - P(good).
    reference = load_predictor(env.art.model_path, "onnx", num_threads=1)
    scores = []
    for name in names:
        with Image.open(env.camera / name) as image:
            pixels = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))
        scores.append(1.0 - float(reference.predict(pixels[None])[0][0]))
    ordered = sorted(scores)
    threshold = (ordered[1] + ordered[2]) / 2
    env.deploy("v1", threshold=threshold)
    agent = env.agent()
    agent.sync_once()

    decisions = agent.inspect_pending()

    assert [d.image for d in decisions] == names
    assert [d.rejected for d in decisions] == [s >= threshold for s in scores]
    assert any(d.rejected for d in decisions) and not all(d.rejected for d in decisions)
    np.testing.assert_allclose([d.defect_score for d in decisions], scores, atol=1e-5)
    assert sorted(p.name for p in (env.camera / "processed").iterdir()) == sorted(names)
    rejected_dir = env.camera / "rejected_input"
    assert {p.name for p in rejected_dir.iterdir()} == {"f_garbage.png", "g_notes.txt", "reasons.log"}
    reasons = (rejected_dir / "reasons.log").read_text()
    assert "f_garbage.png\tundecodable" in reasons and "g_notes.txt\tunsupported_extension" in reasons
    assert (env.camera / ".h_in_progress.png").exists() and (env.camera / "i.png.tmp").exists()
    lines = [json.loads(line) for line in (env.state / "decisions.jsonl").read_text().splitlines()]
    assert [line["image"] for line in lines] == names and {line["model_version"] for line in lines} == {"v1"}
    assert agent.inspect_pending() == []


def test_every_kind_of_bad_camera_file_is_set_aside_without_stopping(env: Env) -> None:
    from tests.bad_images import write_bad_images

    bad = write_bad_images(env.camera)
    env.deploy("v1")
    agent = env.agent()
    agent.sync_once()

    decided = {d.image for d in agent.inspect_pending()}

    assert not [p for p in env.camera.iterdir() if p.is_file()]  # nothing left behind to retry forever
    set_aside = {p.name for p in (env.camera / "rejected_input").iterdir()} - {"reasons.log"}
    assert decided | set_aside == set(bad) and not decided & set_aside
    for name in ("zero_byte.png", "truncated.jpg", "garbage.png", "notes.txt", "sixteen_bit.png", "cmyk.jpg"):
        assert name in set_aside, name


def test_images_wait_while_no_model_is_active(env: Env) -> None:
    _write_image(env.camera / "a.png", seed=0)
    agent = env.agent()

    assert agent.inspect_pending() == []
    assert (env.camera / "a.png").exists()


def test_feedback_counts_each_pair_once_and_keeps_bad_lines(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.deploy("v1")
    agent = env.agent()
    agent.sync_once()
    feedback = env.state / "feedback.csv"
    feedback.write_text(
        "image,verdict\n"
        "a.png,false_reject\n"
        "a.png,false_reject\n"
        "b.png,confirmed_defect\n"
        "c.png,bogus\n"
        "d.png,escape\n"
        "\n"
        "e.png,escape"  # still being written: no newline yet
    )

    with caplog.at_level(logging.ERROR, logger="edge_sync.agent"):
        first = agent.apply_feedback()
    with feedback.open("a") as handle:
        handle.write("\na.png,false_reject\n")
    second = agent.apply_feedback()
    third = agent.apply_feedback()

    assert (first, second, third) == (3, 1, 0)
    assert any("line 5" in r.getMessage() and "bogus" in r.getMessage() for r in caplog.records)
    assert (env.state / "feedback_rejected.csv").read_text() == "c.png,bogus\n"
    env.clock.advance(61)
    window = agent.close_window_if_due()
    assert window is not None
    assert (window.false_rejects, window.confirmed_defects, window.escapes_found, window.inspected) == (1, 1, 2, 0)
    # A restart does not count the file again.
    assert env.agent().apply_feedback() == 0


# ------------------------------------------------------------------------------------------ windows and outbox


def test_window_is_written_to_outbox_before_upload(env: Env) -> None:
    env.deploy("v1")
    agent = env.agent()
    agent.sync_once()
    for seed in range(3):
        _write_image(env.camera / f"img{seed}.png", seed)
    agent.inspect_pending()
    assert agent.close_window_if_due() is None  # neither time nor count reached

    env.clock.advance(60)
    window = agent.close_window_if_due()

    assert window is not None
    assert window.window_id == f"dev-1-{START:%Y%m%dT%H%M%S}Z-0"
    assert (window.model_version, window.line, window.inspected) == ("v1", "line1", 3)
    assert sum(window.score_histogram) == 3 and sum(window.input_brightness_histogram) == 3
    (path,) = env.outbox()
    assert MetricWindow.model_validate_json(path.read_text()) == window
    seen_in_outbox: list[bool] = []
    env.server.on_metrics = lambda payload: seen_in_outbox.append(path.exists())

    assert agent.flush_outbox() == 1

    assert seen_in_outbox == [True]
    assert env.server.metrics[window.window_id]["inspected"] == 3
    assert env.outbox() == []


def test_window_closes_at_max_images_and_on_activation(env: Env) -> None:
    env.deploy("v1")
    agent = env.agent(window_max_images=2)
    agent.sync_once()
    for seed in range(3):
        _write_image(env.camera / f"img{seed}.png", seed)

    agent.inspect_pending()

    (full,) = env.outbox()
    assert MetricWindow.model_validate_json(full.read_text()).inspected == 2
    env.deploy("v2")
    assert agent.sync_once().status == "activated"
    windows = [MetricWindow.model_validate_json(p.read_text()) for p in env.outbox()]
    assert sorted((w.model_version, w.inspected) for w in windows) == [("v1", 1), ("v1", 2)]
    assert len({w.window_id for w in windows}) == 2


def test_server_down_keeps_outbox_and_flushes_exactly_once_later(env: Env) -> None:
    env.deploy("v1")
    agent = env.agent()
    agent.sync_once()
    _write_image(env.camera / "a.png", seed=0)
    agent.inspect_pending()
    env.clock.advance(60)
    window = agent.close_window_if_due()
    assert window is not None

    env.server.down = True
    assert agent.flush_outbox() == 0
    assert len(env.outbox()) == 1
    env.server.down = False
    assert agent.flush_outbox() == 1
    assert agent.flush_outbox() == 0

    assert env.server.stored_posts == [window.window_id]
    assert env.outbox() == []


def test_duplicate_answer_counts_as_uploaded(env: Env) -> None:
    env.deploy("v1")
    agent = env.agent()
    agent.sync_once()
    _write_image(env.camera / "a.png", seed=0)
    agent.inspect_pending()
    env.clock.advance(60)
    window = agent.close_window_if_due()
    assert window is not None
    env.server.metrics[window.window_id] = window.model_dump(mode="json")  # stored before a lost answer

    assert agent.flush_outbox() == 1
    assert env.outbox() == []


# ------------------------------------------------------------------------------------------ rollback and restart


def test_rollback_to_previous_and_pruning(env: Env) -> None:
    agent = env.agent()
    with pytest.raises(AgentError, match="nothing to roll back"):
        agent.rollback()
    for version in ("v1", "v2"):
        env.deploy(version)
        assert agent.sync_once().status == "activated"

    assert agent.rollback() == "v1"

    assert agent.active_version == "v1"
    record = env.active_record()
    assert (record["active"], record["previous"], record["rolled_back"]) == ("v1", "v2", ["v2"])
    refused = agent.sync_once()  # the server still offers v2
    assert refused.status == "refused" and "rolled back" in refused.detail
    assert agent.active_version == "v1"
    env.deploy("v3")
    assert agent.sync_once().status == "activated"
    assert sorted(p.name for p in (env.state / "models").iterdir()) == ["v1", "v3"]
    assert env.active_record()["previous"] == "v1"
    downloads = len(env.server.package_requests())
    env.deploy("v1")  # the platform goes back to v1: the kept copy is verified and reused
    assert agent.sync_once().status == "activated"
    assert len(env.server.package_requests()) == downloads
    assert (env.active_record()["active"], env.active_record()["previous"]) == ("v1", "v3")


def test_restart_keeps_active_model_and_ignores_partial_folders(env: Env) -> None:
    env.deploy("v1")
    env.agent().sync_once()
    # A crash mid-download of v2: a partial folder is left behind.
    junk = env.state / "models" / "v2.partial" / "package"
    junk.mkdir(parents=True)
    (junk / "model.onnx.part").write_bytes(b"half a model")

    restarted = env.agent()

    assert restarted.active_version == "v1"
    _write_image(env.camera / "a.png", seed=0)
    assert [d.model_version for d in restarted.inspect_pending()] == ["v1"]


def test_restart_refuses_a_model_altered_on_disk(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.deploy("v1")
    env.agent().sync_once()
    model = env.state / "models" / "v1" / "package" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[100] ^= 0xFF
    model.write_bytes(bytes(data))

    with caplog.at_level(logging.ERROR, logger="edge_sync.agent"):
        restarted = env.agent()

    assert restarted.active_version is None
    assert any("does not verify" in r.getMessage() for r in caplog.records)
    assert restarted.sync_once().status == "activated"  # reinstalled from the server


# ------------------------------------------------------------------------------------------ loop and CLI


def test_run_loop_survives_server_downtime(env: Env) -> None:
    env.deploy("v1")
    env.server.down = True
    _write_image(env.camera / "a.png", seed=0)
    agent = env.agent(poll_seconds=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    try:
        time.sleep(0.2)
        assert thread.is_alive() and agent.active_version is None
        env.server.down = False
        deadline = time.monotonic() + 10
        while not (env.camera / "processed" / "a.png").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert agent.active_version == "v1"
    assert (env.camera / "processed" / "a.png").exists()


def test_cli_once_against_a_closed_port(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: connection refused
    args = [
        "--device", "dev-1",
        "--server", f"http://127.0.0.1:{port}",
        "--camera-dir", str(env.camera),
        "--state-dir", str(env.state),
        "--public-key", str(env.art.public_key),
        "--once",
    ]  # fmt: skip
    monkeypatch.delenv("MFG_EDGE_TOKEN", raising=False)
    with pytest.raises(SystemExit) as missing_token:
        main(args)
    assert missing_token.value.code == 2

    monkeypatch.setenv("MFG_EDGE_TOKEN", TOKEN)
    assert main(args) == 0
    assert (env.state / "models").is_dir()


def test_config_rejects_unsafe_device_id(env: Env) -> None:
    with pytest.raises(ValueError, match="device_id"):
        env.config(device_id="../etc")


def test_unsafe_package_path_is_refused_before_downloading(env: Env) -> None:
    files = {"../escape.onnx": env.art.model, "selftest.npz": env.art.selftest}
    env.server.deploy(_signed(env.art, "v1", files, model_path="../escape.onnx"), files)

    outcome = env.agent().sync_once()

    assert outcome.status == "refused" and "safe relative path" in outcome.detail
    assert not env.server.package_requests()


# ------------------------------------------------------------------------------------------ the real server


def test_agent_against_the_real_sync_server(env: Env, tmp_path: Path) -> None:
    """The agent with the sync server's own FastAPI app (in process, no socket) as its HTTP client."""
    from starlette.testclient import TestClient

    from edge_sync.server import create_app
    from edge_sync.server_state import ServerState

    state = ServerState(tmp_path / "server")
    token = state.register_device("dev-1", "line1")
    package_dir = tmp_path / "published"
    package_dir.mkdir()
    for path, data in _package(env.art).items():
        (package_dir / path).write_bytes(data)
    state.publish(_signed(env.art, "v1"), package_dir)
    # A download of v1 cut off earlier: the agent must resume it with a Range request.
    partial = env.state / "models" / "v1.partial" / "package"
    partial.mkdir(parents=True)
    (partial / "model.onnx.part").write_bytes(env.art.model[: len(env.art.model) // 2])
    client = TestClient(create_app(state), base_url="http://testserver")
    agent = EdgeAgent(env.config(server_url="http://testserver", token=token), client=client, clock=env.clock)

    outcome = agent.sync_once()

    assert (outcome.status, outcome.model_version) == ("activated", "v1")
    assert (env.state / "models" / "v1" / "package" / "model.onnx").read_bytes() == env.art.model
    assert agent.sync_once().status == "up_to_date"
    _write_image(env.camera / "a.png", seed=0)
    assert len(agent.inspect_pending()) == 1
    env.clock.advance(60)
    window = agent.close_window_if_due()
    assert window is not None
    assert agent.flush_outbox() == 1
    stored = state.windows("line1")
    assert [w["window_id"] for w in stored] == [window.window_id] and stored[0]["inspected"] == 1
    # The same window again (an answer lost in transit) is a duplicate, and still counts as delivered.
    (env.state / "outbox" / f"{window.window_id}.json").write_text(window.model_dump_json())
    assert agent.flush_outbox() == 1
    assert len(state.windows("line1")) == 1
    stranger = EdgeAgent(env.config(token="not-registered"), client=client, clock=env.clock).sync_once()
    assert stranger.status == "refused" and "401" in stranger.detail


def test_a_version_1_manifest_still_runs_and_means_squash() -> None:
    """Manifests signed before letterboxing (schema 1, no resize field) keep working: they mean squash.
    A schema-1 manifest cannot claim letterbox."""
    from edge_sync.contract import DeploymentManifest

    payload = json.loads(canonical_json(_manifest("v1", {"model.onnx": b"x"})))
    payload["schema_version"] = 1
    del payload["input"]["resize"]
    assert DeploymentManifest.model_validate(payload).input.resize == "squash"
    payload["input"]["resize"] = "letterbox"
    with pytest.raises(ValueError, match="needs manifest schema version 2"):
        DeploymentManifest.model_validate(payload)
