"""The sync server's durable state: hashed tokens, verified packages, ring routing, history, windows.

Packages are a few small random files signed with a key made in tmp_path; nothing touches the network.
``make_package``/``make_signed``/``make_window`` are reused by ``test_server.py``.
"""

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from edge_sync.contract import (
    INPUT_BINS,
    SCORE_BINS,
    DeploymentManifest,
    InputSpec,
    MetricWindow,
    ModelFile,
    Ring,
    SignedManifest,
    generate_keypair,
    load_private_key,
    load_public_key,
    sign_manifest,
    verify_manifest,
)
from edge_sync.contract.names import NAME
from edge_sync.errors import EdgeSyncError
from edge_sync.server_state import (
    DeviceRecord,
    Forbidden,
    InvalidInput,
    NotFound,
    PackageMismatch,
    ServerState,
    SyncError,
    UnknownDevice,
)

PACKAGE_FILES = ("model.onnx", "model_int8.onnx", "openvino/model.xml", "openvino/model.bin", "selftest.npz")


def make_package(folder: Path, seed: int, sizes: tuple[int, ...] = (5000, 2100, 300, 4096, 700)) -> Path:
    """A model package of small random files (different bytes for each seed)."""
    rng = np.random.default_rng(seed)
    for name, size in zip(PACKAGE_FILES, sizes, strict=True):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return folder


def make_signed(
    package: Path,
    key_path: Path,
    *,
    line: str = "line1",
    version: str = "line1-bracket-a-v1",
    ring: Ring = Ring.FLEET,
    devices: tuple[str, ...] = (),
) -> SignedManifest:
    """A manifest listing every file of ``package`` with its sha256 and size, signed with ``key_path``."""
    files = tuple(
        ModelFile(path=p.relative_to(package).as_posix(), sha256=hashlib.sha256(p.read_bytes()).hexdigest(), n_bytes=p.stat().st_size)
        for p in sorted(package.rglob("*"))
        if p.is_file()
    )
    manifest = DeploymentManifest(
        deployment_id=f"{version}-{ring.value}",
        line=line,
        model_version=version,
        model_format="onnx",
        model_path="model.onnx",
        files=files,
        input=InputSpec(height=32, width=32),
        classes=("good", "scratch"),
        good_class="good",
        threshold=0.5,
        dataset_version="ds-0001",
        ring=ring,
        devices=devices,
        created_at=datetime(2026, 11, 27, 4, 12, tzinfo=UTC),
    )
    return sign_manifest(manifest, load_private_key(key_path))


def make_window(device_id: str, line: str, window_id: str = "w-0001", ended_at: datetime | None = None) -> MetricWindow:
    ended = ended_at or datetime.now(UTC)
    return MetricWindow(
        window_id=window_id,
        device_id=device_id,
        line=line,
        model_version="line1-bracket-a-v1",
        started_at=ended - timedelta(minutes=5),
        ended_at=ended,
        inspected=100,
        rejected=7,
        confirmed_defects=5,
        false_rejects=2,
        escapes_found=0,
        score_histogram=tuple([5] * SCORE_BINS),
        input_brightness_histogram=tuple([0] * (INPUT_BINS - 1) + [100]),
    )


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "keys" / "platform.pem", tmp_path / "keys" / "platform.pub.pem"
    generate_keypair(private, public)
    return private, public


@pytest.fixture
def state(tmp_path: Path) -> ServerState:
    return ServerState(tmp_path / "state")


def _device(state: ServerState, device_id: str, line: str = "line1", canary: bool = False) -> DeviceRecord:
    return state.authenticate(state.register_device(device_id, line, canary=canary))


@pytest.fixture
def deployed(state: ServerState, keys: tuple[Path, Path], tmp_path: Path) -> ServerState:
    """``state`` with line1-bracket-a-v1 deployed to line1: windows and feedback must name a deployed model."""
    package = make_package(tmp_path / "pkg-deployed", seed=99)
    state.publish(make_signed(package, keys[0]), package)
    return state


def _version_of(signed: SignedManifest | None) -> str | None:
    return None if signed is None else json.loads(signed.manifest_json)["model_version"]


# ---------------------------------------------------------------------- devices


def test_token_is_stored_only_as_its_hash_and_reregistering_revokes_it(state: ServerState) -> None:
    token = state.register_device("cam-01", "line1")
    stored = (state.root / "devices.json").read_text()
    assert token not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert state.authenticate(token) == DeviceRecord("cam-01", "line1", canary=False)

    new_token = state.register_device("cam-01", "line2", canary=True)
    assert state.authenticate(new_token) == DeviceRecord("cam-01", "line2", canary=True)
    with pytest.raises(UnknownDevice, match="register the device again"):
        state.authenticate(token)


def test_unknown_token_and_bad_names_are_refused(state: ServerState) -> None:
    state.register_device("cam-01", "line1")
    for token in ("", "not-a-token"):
        with pytest.raises(UnknownDevice):
            state.authenticate(token)
    for device_id, line in (("../etc", "line1"), ("cam 1", "line1"), ("cam-01", "a" * 64), ("cam-01", "")):
        with pytest.raises(InvalidInput, match="not a valid name"):
            state.register_device(device_id, line)
    with pytest.raises(UnknownDevice, match="not registered"):
        state.set_canary("cam-99", True)


def test_names_follow_the_contract_rule_and_errors_share_the_edge_sync_root(state: ServerState) -> None:
    """The server refuses what the device and the platform refuse: one NAME rule, one exception root."""
    for line in ("-x", "_x", "-line1"):
        assert not NAME.fullmatch(line)
        with pytest.raises(InvalidInput, match="starting with a letter or digit") as refused:
            state.register_device("cam-01", line)
        assert isinstance(refused.value, EdgeSyncError) and isinstance(refused.value, SyncError)
        assert isinstance(refused.value, ValueError)
    with pytest.raises(InvalidInput):
        state.register_device("-cam", "line1")
    assert NAME.fullmatch("line1") and state.register_device("cam-01", "line1")
    assert issubclass(SyncError, EdgeSyncError) and issubclass(InvalidInput, EdgeSyncError)


def test_canary_devices_of_a_line(state: ServerState) -> None:
    state.register_device("cam-02", "line1", canary=True)
    state.register_device("cam-01", "line1")
    state.register_device("cam-09", "line2", canary=True)
    assert state.canary_devices("line1") == ["cam-02"]
    state.set_canary("cam-01", True)
    assert state.canary_devices("line1") == ["cam-01", "cam-02"]
    assert state.canary_devices("line3") == []


def test_a_second_state_object_sees_changes_at_once(state: ServerState) -> None:
    """The server and the platform are two processes: no stale cache may hide a registration."""
    other = ServerState(state.root)
    token = state.register_device("cam-01", "line1")
    assert other.authenticate(token).canary is False
    state.set_canary("cam-01", True)
    assert other.authenticate(token).canary is True


def test_concurrent_registrations_lose_nothing(state: ServerState) -> None:
    """devices.json is read-modify-write: the lock must keep every thread's device."""
    tokens: dict[str, str] = {}

    def register(index: int) -> None:
        tokens[f"cam-{index:02d}"] = ServerState(state.root).register_device(f"cam-{index:02d}", "line1")

    threads = [threading.Thread(target=register, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert {device_id: state.authenticate(token).device_id for device_id, token in tokens.items()} == {
        device_id: device_id for device_id in tokens
    }
    assert len(json.loads((state.root / "devices.json").read_text())["devices"]) == 12


# ------------------------------------------------------------------ deployments


def test_canary_and_fleet_routing(state: ServerState, keys: tuple[Path, Path], tmp_path: Path) -> None:
    listed = _device(state, "cam-01")
    flagged = _device(state, "cam-02", canary=True)
    plain = _device(state, "cam-03")
    other_line = _device(state, "cam-04", line="line2")
    v1 = make_package(tmp_path / "v1", seed=1)
    v2 = make_package(tmp_path / "v2", seed=2)

    assert state.deployment_for(plain) is None
    state.publish(make_signed(v1, keys[0]), v1)
    # No canary yet: canary devices run the fleet deployment too.
    assert {_version_of(state.deployment_for(d)) for d in (listed, flagged, plain)} == {"line1-bracket-a-v1"}
    assert state.deployment_for(other_line) is None

    canary = make_signed(v2, keys[0], version="line1-bracket-a-v2", ring=Ring.CANARY, devices=("cam-01",))
    state.publish(canary, v2)
    assert _version_of(state.deployment_for(listed)) == "line1-bracket-a-v2"
    assert _version_of(state.deployment_for(flagged)) == "line1-bracket-a-v2"
    assert _version_of(state.deployment_for(plain)) == "line1-bracket-a-v1"
    assert set(state.deployments("line1")) == {"canary", "fleet"}
    # The signed manifest comes back byte for byte, so devices can verify it.
    assert verify_manifest(state.deployment_for(listed), load_public_key(keys[1])).model_version == "line1-bracket-a-v2"

    state.clear_canary("line1")
    state.clear_canary("line1")  # ending a ring twice is harmless
    assert {_version_of(state.deployment_for(d)) for d in (listed, flagged, plain)} == {"line1-bracket-a-v1"}


def test_package_mismatch_makes_nothing_servable(state: ServerState, keys: tuple[Path, Path], tmp_path: Path) -> None:
    package = make_package(tmp_path / "pkg", seed=1)
    signed = make_signed(package, keys[0])
    tampered = bytearray((package / "openvino/model.bin").read_bytes())
    tampered[100] ^= 0xFF  # same size, other bytes
    (package / "openvino/model.bin").write_bytes(bytes(tampered))

    with pytest.raises(PackageMismatch, match="openvino/model.bin"):
        state.publish(signed, package)
    assert state.deployments("line1") == {}
    assert state.history("line1") == []
    assert not (state.root / "packages" / "line1-bracket-a-v1" / "index.json").exists()
    assert list((state.root / "tmp").iterdir()) == []

    incomplete = make_package(tmp_path / "incomplete", seed=1)
    signed = make_signed(incomplete, keys[0])
    (incomplete / "selftest.npz").unlink()
    with pytest.raises(PackageMismatch, match="selftest.npz is listed in the manifest but missing"):
        state.publish(signed, incomplete)


def test_a_version_cannot_change_its_bytes(state: ServerState, keys: tuple[Path, Path], tmp_path: Path) -> None:
    first = make_package(tmp_path / "a", seed=1)
    state.publish(make_signed(first, keys[0]), first)
    other = make_package(tmp_path / "b", seed=2)
    with pytest.raises(PackageMismatch, match="new model_version"):
        state.publish(make_signed(other, keys[0], ring=Ring.CANARY), other)


def test_unsafe_file_paths_in_a_manifest_are_refused(state: ServerState, keys: tuple[Path, Path], tmp_path: Path) -> None:
    package = make_package(tmp_path / "pkg", seed=1)
    manifest = verify_manifest(make_signed(package, keys[0]), load_public_key(keys[1]))
    evil = manifest.model_copy(update={"files": (*manifest.files, ModelFile(path="../../devices.json", sha256="0" * 64, n_bytes=1))})
    with pytest.raises(InvalidInput, match="plain relative path"):
        state.publish(sign_manifest(evil, load_private_key(keys[0])), package)


def test_history_is_kept_and_serves_a_rollback(state: ServerState, keys: tuple[Path, Path], tmp_path: Path) -> None:
    v1 = make_package(tmp_path / "v1", seed=1)
    v2 = make_package(tmp_path / "v2", seed=2)
    fleet_v1 = make_signed(v1, keys[0])
    state.publish(fleet_v1, v1)
    state.publish(fleet_v1, v1)  # idempotent: no second record
    state.publish(make_signed(v2, keys[0], version="line1-bracket-a-v2", ring=Ring.CANARY), v2)
    state.clear_canary("line1")
    state.publish(make_signed(v2, keys[0], version="line1-bracket-a-v2"), v2)

    history = state.history("line1")
    assert [(r["event"], r["ring"], r["model_version"]) for r in history] == [
        ("publish", "fleet", "line1-bracket-a-v1"),
        ("publish", "canary", "line1-bracket-a-v2"),
        ("clear_canary", "canary", "line1-bracket-a-v2"),
        ("publish", "fleet", "line1-bracket-a-v2"),
    ]
    rollback = SignedManifest.model_validate(history[0]["signed_manifest"])
    assert rollback == fleet_v1
    state.publish(rollback, v1)
    assert _version_of(state.deployments("line1")["fleet"]) == "line1-bracket-a-v1"
    assert len(state.history("line1")) == 5


def test_a_torn_history_tail_is_ignored_then_cut(state: ServerState, keys: tuple[Path, Path], tmp_path: Path) -> None:
    v1 = make_package(tmp_path / "v1", seed=1)
    state.publish(make_signed(v1, keys[0]), v1)
    history_path = state.root / "deployments" / "line1" / "history.jsonl"
    with history_path.open("a") as handle:
        handle.write('{"event": "publish", "ring": "ca')  # a crash mid-append
    assert len(state.history("line1")) == 1
    state.publish(make_signed(v1, keys[0], ring=Ring.CANARY), v1)
    assert [r["ring"] for r in state.history("line1")] == ["fleet", "canary"]


def test_package_files_only_for_the_devices_own_line(state: ServerState, keys: tuple[Path, Path], tmp_path: Path) -> None:
    mine = _device(state, "cam-01")
    theirs = _device(state, "cam-09", line="line2")
    v1 = make_package(tmp_path / "v1", seed=1)
    v2 = make_package(tmp_path / "v2", seed=2)
    state.publish(make_signed(v1, keys[0]), v1)
    state.publish(make_signed(v2, keys[0], version="line2-v1", line="line2"), v2)

    served = state.package_file(mine, "line1-bracket-a-v1", "openvino/model.xml")
    assert served.read_bytes() == (v1 / "openvino/model.xml").read_bytes()
    with pytest.raises(Forbidden, match="never deployed to line line1"):
        state.package_file(mine, "line2-v1", "model.onnx")
    with pytest.raises(Forbidden):
        state.package_file(theirs, "line1-bracket-a-v1", "model.onnx")
    for path in ("../../devices.json", "/etc/passwd", "openvino/../model.onnx", "index.json", "../index.json", ""):
        with pytest.raises(NotFound):
            state.package_file(mine, "line1-bracket-a-v1", path)
    for version in ("..", "../packages", "."):
        with pytest.raises(Forbidden):
            state.package_file(mine, version, "model.onnx")

    # A version deployed before stays readable (a device may still be downloading it).
    state.publish(make_signed(v2, keys[0], version="line1-bracket-a-v2"), v2)
    assert state.package_file(mine, "line1-bracket-a-v1", "model.onnx").is_file()


# ---------------------------------------------------------------------- windows


def test_duplicate_window_is_not_double_counted(deployed: ServerState) -> None:
    state = deployed
    device = _device(state, "cam-01")
    window = make_window("cam-01", "line1")
    now = datetime.now(UTC)
    assert state.record_window(window, device, now) is True
    assert state.record_window(window, device, now + timedelta(seconds=5)) is False
    assert [w["window_id"] for w in state.windows("line1")] == ["w-0001"]
    # Window ids are unique per device: another device may use the same id.
    other = _device(state, "cam-02")
    assert state.record_window(make_window("cam-02", "line1"), other, now) is True
    assert len(state.windows()) == 2


def test_concurrent_uploads_of_one_window_store_it_once(deployed: ServerState) -> None:
    state = deployed
    device = _device(state, "cam-01")
    window = make_window("cam-01", "line1", window_id="w-race")
    n_threads = 8
    barrier = threading.Barrier(n_threads)
    results: list[bool] = []
    lock = threading.Lock()

    def upload() -> None:
        barrier.wait()
        stored = state.record_window(window, device, datetime.now(UTC))
        with lock:
            results.append(stored)

    threads = [threading.Thread(target=upload) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(results) == [False] * (n_threads - 1) + [True]
    assert len(state.windows("line1")) == 1
    assert list((state.root / "tmp").iterdir()) == []


def test_clock_skew_and_receive_time_are_recorded(deployed: ServerState) -> None:
    state = deployed
    device = _device(state, "cam-01")
    received = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
    device_clock_ahead = received + timedelta(seconds=90)
    state.record_window(make_window("cam-01", "line1", "w-1", ended_at=device_clock_ahead), device, received)
    state.record_window(make_window("cam-01", "line1", "w-2", ended_at=received - timedelta(seconds=3)), device, received + timedelta(minutes=1))

    first, second = state.windows("line1")
    assert first["window_id"] == "w-1" and first["clock_skew_seconds"] == pytest.approx(-90.0)
    assert datetime.fromisoformat(first["received_at"]) == received
    assert second["clock_skew_seconds"] == pytest.approx(63.0)
    assert first["inspected"] == 100 and len(first["score_histogram"]) == SCORE_BINS
    assert [w["window_id"] for w in state.windows(since=received + timedelta(seconds=30))] == ["w-2"]
    assert state.windows("line2") == []


def test_windows_of_another_device_or_line_are_forbidden(deployed: ServerState) -> None:
    state = deployed
    device = _device(state, "cam-01")
    now = datetime.now(UTC)
    with pytest.raises(Forbidden, match="only its own"):
        state.record_window(make_window("cam-02", "line1"), device, now)
    with pytest.raises(Forbidden):
        state.record_window(make_window("cam-01", "line2"), device, now)
    naive = make_window("cam-01", "line1").model_copy(update={"ended_at": datetime(2026, 11, 27, 12, 0)})
    with pytest.raises(InvalidInput, match="UTC offset"):
        state.record_window(naive, device, now)
    assert state.windows() == []


def test_tokens_never_look_like_command_line_options(tmp_path) -> None:
    from edge_sync.server_state import ServerState

    state = ServerState(tmp_path / "state")
    tokens = [state.register_device(f"dev{i}", "line1") for i in range(40)]
    assert all(token.startswith("mfgt_") for token in tokens)
    assert len(set(tokens)) == 40
