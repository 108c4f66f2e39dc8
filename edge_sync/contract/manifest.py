"""Deployment manifests: which model a line's devices run, and the rules both sides check on one.

A manifest says which model a line runs (task, version, files with sha256, input spec, classes,
threshold, dataset version, ring). The platform builds and signs it (:mod:`edge_sync.contract.signing`);
the server checks it before serving a package and the device before downloading one. Every rule
lives here, on the model itself where it can (a manifest that breaks one cannot be constructed), so
the two sides cannot drift.
"""

from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from edge_sync.contract.names import MODEL_VERSION, NAME
from edge_sync.errors import EdgeSyncError

__all__ = [
    "DECODER_SCHEMA_VERSION",
    "MAX_PACKAGE_PATH",
    "MODEL_FORMATS",
    "SCHEMA_VERSION",
    "SELFTEST_FILE",
    "SUPPORTED_SCHEMA_VERSIONS",
    "ContractError",
    "DecoderBlock",
    "DeploymentManifest",
    "InputSpec",
    "ModelFile",
    "Ring",
    "SignatureInvalid",
    "SignedManifest",
    "Task",
    "UnknownSchemaVersion",
    "package_layout_problem",
]

# 2: InputSpec.resize (letterbox models). A version-1 manifest has no resize field and means squash;
# an agent that knows only version 1 refuses version 2 with "update the edge agent".
# 3: anomaly-detection models (task anomaly, score_scale; edge_sync.contract.decoders.anomaly).
# Classification manifests stay at 2, so an agent that knows only 1 and 2 keeps running classifiers
# and refuses an anomaly model by its version.
# 4: the ``decoder`` block: the task decoder's own parameters (name, version, ...), validated by that
# decoder and required to agree with the top-level fields, which stay for older logic. An agent that
# knows only 1 to 3 refuses a version-4 manifest with "update the edge agent" and keeps its model.
# SCHEMA_VERSION stays the default, so a manifest built without a decoder block still validates.
SCHEMA_VERSION = 2
DECODER_SCHEMA_VERSION = 4
SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2, 3, 4})
MODEL_FORMATS = ("onnx", "openvino", "onnx_int8")
"""The files a deployment can tell devices to run (``DeploymentManifest.model_format``)."""
SELFTEST_FILE = "selftest.npz"
"""The package file holding ``images`` (uint8 N×H×W×3) and the platform's own outputs on them, with
which a device proves it runs the validated model before switching to it."""
MAX_PACKAGE_PATH = 512


class ContractError(EdgeSyncError, ValueError):
    """A manifest or metric window does not satisfy the contract."""


class SignatureInvalid(ContractError):
    """The manifest's signature does not verify with the platform's public key."""


class UnknownSchemaVersion(ContractError):
    """The manifest was written for a schema this device does not understand."""


class Task(StrEnum):
    """The inspection tasks the platform knows. A device states which it runs; a manifest for another
    is refused before anything is downloaded."""

    CLASSIFY = "classify"
    ANOMALY = "anomaly"
    DETECT = "detect"
    SEGMENT = "segment"
    OCR = "ocr"

    @classmethod
    def unstated(cls) -> "Task":
        """The task of a manifest that names none: manifests written before they named a task were all
        classifiers', and callers that build one without a task still mean that."""
        return cls.CLASSIFY


class Ring(StrEnum):
    CANARY = "canary"
    FLEET = "fleet"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DecoderBlock(BaseModel):
    """A manifest's ``decoder`` block (schema 4): which decoder, which version of its block, and that
    decoder's parameters as further keys. The task's decoder validates the parameters
    (:mod:`edge_sync.contract.decoders`); here only the envelope is checked."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str = Field(description="the task whose decoder reads the block; must be the manifest's task")
    version: int = Field(ge=1, description="version of this decoder's block")

    def params(self) -> dict[str, Any]:
        """The decoder's parameters: every key besides ``name`` and ``version``."""
        return dict(self.model_extra or {})


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
        "squash", description="how a camera image is fitted to height x width (edge_sync.contract.imaging.fit_to_input)"
    )


class DeploymentManifest(_Frozen):
    """What a line's devices must run. Signed as a whole by the platform."""

    schema_version: int = SCHEMA_VERSION
    deployment_id: str = Field(description="unique per deployment, e.g. line1-bracket-a-v2-canary-20261127T0412")
    line: str
    model_version: str
    task: Task = Task.unstated()
    model_format: Literal["onnx", "openvino", "onnx_int8"] = Field(description="which file the device runs")
    model_path: str = Field(description="path inside the package of the model to load (OpenVINO: the .xml)")
    files: tuple[ModelFile, ...] = Field(description="every file of the package, all verified by sha256")
    input: InputSpec
    classes: tuple[str, ...]
    good_class: str | None = None
    threshold: float | None = Field(
        None, description="reject when the defect score >= threshold (the task's decoder defines the score)"
    )
    score_scale: float | None = Field(
        None, gt=0.0, allow_inf_nan=False,
        description="for decoders that scale a raw score: the raw image score is divided by this (schema 3)",
    )
    decoder: DecoderBlock | None = Field(
        None, description="schema 4: the task decoder's parameters; must agree with the top-level fields"
    )
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

    @model_serializer(mode="wrap")
    def _without_absent_decoder(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave ``decoder`` out when there is none, so a manifest without one serialises (and is
        signed) byte for byte as before schema 4, and older agents still read it."""
        data = handler(self)
        if self.decoder is None:
            data.pop("decoder", None)
        return data

    @model_validator(mode="after")
    def _schema_features(self) -> "DeploymentManifest":
        """What needs which schema version: letterbox input (2), the task's fields (its decoder says
        which version they need), the decoder block (4, and required from 4 on)."""
        from edge_sync.contract.decoders import check_task_fields

        check_task_fields(self)
        if self.schema_version < 2 and self.input.resize != "squash":
            raise ValueError(
                f"input.resize {self.input.resize!r} needs manifest schema version 2 (this one says "
                f"{self.schema_version}); rebuild the manifest with the current platform"
            )
        if self.decoder is not None and self.schema_version < DECODER_SCHEMA_VERSION:
            raise ValueError(
                f"a decoder block needs manifest schema version {DECODER_SCHEMA_VERSION} (this one says "
                f"{self.schema_version}); rebuild the manifest with the current platform"
            )
        if self.decoder is None and self.schema_version >= DECODER_SCHEMA_VERSION:
            raise ValueError(
                f"manifest schema version {self.schema_version} needs its decoder block (the parameters of the "
                f"{self.task.value!r} decoder); rebuild the manifest with the current platform"
            )
        if self.decoder is not None and self.decoder.name != self.task.value:
            raise ValueError(
                f"the decoder block is for {self.decoder.name!r} but the manifest's task is {self.task.value!r}; "
                "rebuild the manifest with the current platform"
            )
        return self

    @model_validator(mode="after")
    def _names_and_decision(self) -> "DeploymentManifest":
        if not NAME.fullmatch(self.line):
            raise ValueError(
                f"line {self.line!r} is not a valid name (1 to 63 letters, digits, '_' or '-', starting with a "
                "letter or digit); rename the line on the platform"
            )
        if not MODEL_VERSION.fullmatch(self.model_version):
            raise ValueError(
                f"model_version {self.model_version!r} is not valid (up to 128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit); register the model under a valid version"
            )
        if self.good_class is not None and self.good_class not in self.classes:
            raise ValueError(f"good_class {self.good_class!r} is not one of the classes {list(self.classes)}")
        if self.threshold is not None:
            if self.good_class is None:
                raise ValueError(f"a threshold ({self.threshold}) needs a good_class to score against")
            if not 0.0 < self.threshold <= 1.0:
                raise ValueError(
                    f"threshold must be in (0, 1] (reject when 1 - P(good) >= threshold), got {self.threshold}"
                )
        return self

    @model_validator(mode="after")
    def _decoder_block(self) -> "DeploymentManifest":
        """The task's decoder checks its block, once the fields it must agree with are known sound."""
        from edge_sync.contract.decoders import check_decoder_block

        check_decoder_block(self)
        return self


class SignedManifest(_Frozen):
    manifest_json: str = Field(description="canonical JSON of the DeploymentManifest, exactly as signed")
    signature: str = Field(description="base64 ed25519 signature of manifest_json's UTF-8 bytes")
    key_id: str = Field(description="sha256 prefix of the public key that verifies it")


def package_layout_problem(manifest: DeploymentManifest) -> str | None:
    """Why the manifest's file list is unsafe to write to disk or serve, or None when it is sound.

    One rule for both sides: the server checks it before serving a package, the device before
    downloading one. Paths must be plain relative paths inside the package, listed once, never both
    a file and a folder, and ``model_path`` and the self-test must be among them.
    """
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
    if SELFTEST_FILE not in paths:
        return (
            f"the package has no {SELFTEST_FILE}, so a device cannot prove it runs the validated model; "
            "re-export the model (the exporter writes the self-test)"
        )
    return None
