"""The contract between the platform and its edge devices: deployment manifests, their ed25519
signatures, and metric windows.

A manifest says which model a line runs (version, files with sha256, input spec, threshold,
dataset version). The platform signs its canonical JSON with its private key; a device holds only
the public key and refuses any manifest whose signature or schema version it does not know.
Metric windows carry **counts** (never ratios), so windows from many devices add up exactly, and a
window id makes each upload idempotent.
"""

import base64
import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "SCORE_BINS",
    "ContractError",
    "DeploymentManifest",
    "INPUT_BINS",
    "InputSpec",
    "MetricWindow",
    "ModelFile",
    "Ring",
    "SignatureInvalid",
    "SignedManifest",
    "UnknownSchemaVersion",
    "canonical_json",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "package_layout_problem",
    "sign_manifest",
    "verify_manifest",
]

# 2: InputSpec.resize (letterbox models). A version-1 manifest has no resize field and means squash;
# an agent that knows only version 1 refuses version 2 with "update the edge agent".
SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2})
SCORE_BINS = 20  # defect-score histogram: 20 equal bins over [0, 1]
INPUT_BINS = 16  # mean-brightness histogram of incoming images: 16 equal bins over [0, 255]


class ContractError(ValueError):
    """A manifest or metric window does not satisfy the contract."""


class SignatureInvalid(ContractError):
    """The manifest's signature does not verify with the platform's public key."""


class UnknownSchemaVersion(ContractError):
    """The manifest was written for a schema this device does not understand."""


class Ring(StrEnum):
    CANARY = "canary"
    FLEET = "fleet"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelFile(_Frozen):
    path: str = Field(description="path inside the model package, forward slashes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    n_bytes: int = Field(ge=0)


class InputSpec(_Frozen):
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    channels: Literal[3] = 3
    layout: Literal["NCHW"] = "NCHW"
    dtype: Literal["float32"] = "float32"
    value_range: tuple[float, float] = (0.0, 255.0)
    colour: Literal["RGB"] = "RGB"
    resize: Literal["squash", "letterbox"] = Field(
        "squash", description="how a camera image is fitted to height x width (edge_sync.imaging.fit_to_input)"
    )


class DeploymentManifest(_Frozen):
    """What a line's devices must run. Signed as a whole by the platform."""

    schema_version: int = SCHEMA_VERSION
    deployment_id: str = Field(description="unique per deployment, e.g. line1-bracket-a-v2-canary-20261127T0412")
    line: str
    model_version: str
    task: Literal["classify"] = "classify"
    model_format: Literal["onnx", "openvino", "onnx_int8"] = Field(description="which file the device runs")
    model_path: str = Field(description="path inside the package of the model to load (OpenVINO: the .xml)")
    files: tuple[ModelFile, ...] = Field(description="every file of the package, all verified by sha256")
    input: InputSpec
    classes: tuple[str, ...]
    good_class: str | None = None
    threshold: float | None = Field(None, description="reject when 1 - P(good) >= threshold")
    dataset_version: str
    ring: Ring = Ring.FLEET
    devices: tuple[str, ...] = Field((), description="for a canary ring: the devices it targets")
    created_at: datetime

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, value: int) -> int:
        if value not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(
                f"manifest schema version {value} is not supported by this device (supported: "
                f"{sorted(SUPPORTED_SCHEMA_VERSIONS)}); update the edge agent"
            )
        return value

    @model_validator(mode="after")
    def _resize_needs_schema_2(self) -> "DeploymentManifest":
        if self.schema_version < 2 and self.input.resize != "squash":
            raise ValueError(
                f"input.resize {self.input.resize!r} needs manifest schema version 2 (this one says "
                f"{self.schema_version}); rebuild the manifest with the current platform"
            )
        return self


class SignedManifest(_Frozen):
    manifest_json: str = Field(description="canonical JSON of the DeploymentManifest, exactly as signed")
    signature: str = Field(description="base64 ed25519 signature of manifest_json's UTF-8 bytes")
    key_id: str = Field(description="sha256 prefix of the public key that verifies it")


class MetricWindow(_Frozen):
    """Counts a device observed over one window. Ratios are computed on the platform from sums."""

    window_id: str = Field(description="device-unique id; the server keeps the first upload of an id")
    device_id: str
    line: str
    model_version: str
    started_at: datetime = Field(description="device clock; the server also records its own receive time")
    ended_at: datetime
    inspected: int = Field(ge=0)
    rejected: int = Field(ge=0)
    confirmed_defects: int = Field(ge=0, description="rejections an operator confirmed as real defects")
    false_rejects: int = Field(ge=0, description="rejections an operator marked as good parts")
    escapes_found: int = Field(ge=0, description="passed parts found defective at audit")
    score_histogram: tuple[int, ...] = Field(description=f"{SCORE_BINS} bins of the defect score over [0, 1]")
    input_brightness_histogram: tuple[int, ...] = Field(description=f"{INPUT_BINS} bins of mean image brightness")

    @field_validator("score_histogram")
    @classmethod
    def _score_bins(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) != SCORE_BINS or min(value, default=0) < 0:
            raise ValueError(f"score_histogram needs {SCORE_BINS} non-negative counts, got {len(value)}")
        return value

    @field_validator("input_brightness_histogram")
    @classmethod
    def _input_bins(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) != INPUT_BINS or min(value, default=0) < 0:
            raise ValueError(f"input_brightness_histogram needs {INPUT_BINS} non-negative counts, got {len(value)}")
        return value


def canonical_json(manifest: DeploymentManifest) -> str:
    """Sorted keys, no whitespace: the exact bytes that are signed."""
    return json.dumps(manifest.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def generate_keypair(private_path: Path, public_path: Path) -> None:
    """Write a new ed25519 key pair as PEM files (the private one readable by its owner only)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def load_private_key(path: Path):
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ContractError(f"{path}: not an unencrypted PEM ed25519 private key ({exc})") from exc


def load_public_key(path: Path):
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_public_key(path.read_bytes())
    except ValueError as exc:
        raise ContractError(f"{path}: not a PEM public key ({exc}); copy the platform's public key file") from exc


def _key_id(public_key) -> str:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_manifest(manifest: DeploymentManifest, private_key) -> SignedManifest:
    text = canonical_json(manifest)
    signature = private_key.sign(text.encode())
    return SignedManifest(
        manifest_json=text, signature=base64.b64encode(signature).decode(), key_id=_key_id(private_key.public_key())
    )


def verify_manifest(signed: SignedManifest, public_key) -> DeploymentManifest:
    """The manifest, if and only if its signature verifies and its schema is known."""
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(base64.b64decode(signed.signature, validate=True), signed.manifest_json.encode())
    except (InvalidSignature, ValueError) as exc:
        raise SignatureInvalid(
            f"manifest signature does not verify with key {_key_id(public_key)} (signed with {signed.key_id}); "
            "the manifest was altered or signed by another key — keep running the current model"
        ) from exc
    payload = json.loads(signed.manifest_json)
    version = payload.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnknownSchemaVersion(
            f"manifest schema version {version!r} is not supported (supported: {sorted(SUPPORTED_SCHEMA_VERSIONS)}); "
            "update the edge agent before deploying this model"
        )
    try:
        return DeploymentManifest.model_validate(payload)
    except ValidationError as exc:
        raise ContractError(f"signed manifest does not match the schema: {exc}") from exc


MAX_PACKAGE_PATH = 512


def package_layout_problem(manifest: DeploymentManifest) -> str | None:
    """Why the manifest's file list is unsafe to write to disk or serve, or None when it is sound.

    One rule for both sides: the server checks it before serving a package, the device before
    downloading one. Paths must be plain relative paths inside the package, listed once, never both
    a file and a folder, and ``model_path`` must be among them.
    """
    from pathlib import PurePosixPath

    paths = [entry.path for entry in manifest.files]
    for path in paths:
        pure = PurePosixPath(path)
        if (
            not path
            or len(path) > MAX_PACKAGE_PATH
            or "\\" in path
            or "\x00" in path
            or pure.is_absolute()
            or path != pure.as_posix()
            or any(part in ("", ".", "..") for part in path.split("/"))
        ):
            return (
                f"file path {path!r} is not a safe relative path (a plain relative path inside the package: "
                "forward slashes, no '..', '.', leading '/' or backslash); rebuild the manifest"
            )
    if len(set(paths)) != len(paths):
        duplicates = sorted({p for p in paths if paths.count(p) > 1})
        return f"files listed twice: {', '.join(duplicates)}; rebuild the manifest"
    folders = {str(parent) for p in paths for parent in PurePosixPath(p).parents if str(parent) != "."}
    if clashes := sorted(folders.intersection(paths)):
        return f"{', '.join(clashes)} is listed both as a file and as a folder; rebuild the manifest"
    if manifest.model_path not in paths:
        return (
            f"model_path {manifest.model_path!r} is not among the listed files "
            f"({', '.join(paths[:10]) or 'none'}); list every package file in the manifest"
        )
    return None
