"""What every task's decoder answers, and the self-test file they all read.

A decoder is the one place that knows how a task's exported model speaks: which named outputs it
reads, how they become a verdict, which parameters the manifest carries for it (its ``decoder``
block, or the legacy top-level fields of manifests older than schema 4), how the platform writes
those parameters and how the package's self-test is judged. The agent, the server and the rest of
the contract only ever call these methods, so a new task is a new decoder, not an edit of them.
"""

import math
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from edge_sync.contract.manifest import DECODER_SCHEMA_VERSION, SELFTEST_FILE, Task
from edge_sync.errors import EdgeSyncError
from edge_sync.inference import Predictor

if TYPE_CHECKING:  # the manifest imports the decoders when it validates: no import cycle at run time
    from edge_sync.contract.manifest import DeploymentManifest

__all__ = ["Decoder", "DecoderParams", "Outcome", "SelfTestMismatch", "Verdict", "finite_positive", "read_selftest"]

Outcome = Literal["pass", "reject", "recorded"]


class SelfTestMismatch(EdgeSyncError):
    """The package's model does not reproduce the platform's self-test numbers (or the self-test file
    is unusable). The agent turns it into its ``SelfTestFailed``: the current model keeps running."""


@dataclass(frozen=True)
class Verdict:
    """One image decoded: ``label`` is the class the device records, ``defect_score`` lies in [0, 1]
    (the unit of every task's score histogram), ``outcome`` is pass/reject, or ``recorded`` for a model
    without a good class, and ``detail`` the numbers kept for audits (probabilities, a raw score)."""

    label: str
    defect_score: float
    outcome: Outcome
    detail: tuple[float, ...]


class DecoderParams(BaseModel):
    """A decoder's parameters: the ``decoder`` block's keys besides ``name`` and ``version``. Each field
    has the name of the legacy top-level manifest field it mirrors, so the two can be compared."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Decoder(ABC):
    """Turns one task's model outputs into verdicts, and owns that task's manifest parameters."""

    task: ClassVar[Task]
    params_model: ClassVar[type[DecoderParams]]
    block_versions: ClassVar[frozenset[int]] = frozenset({1})
    """Versions of this task's ``decoder`` block this device understands."""
    block_version: ClassVar[int] = 1
    """The version the platform writes (:meth:`manifest_fields`)."""
    window_counters: ClassVar[tuple[str, ...]] = ()
    """Counters a metric window carries for this task beyond the shared ones (``MetricWindow.counters``);
    a name ending in ``:`` stands for one counter per class (``boxes:`` → ``boxes:scratch``, ...)."""
    owned_fields: ClassVar[tuple[str, ...]] = ()
    """Top-level manifest fields only this task's manifests may set (another task's manifest with one
    set was built by a broken platform and is refused)."""

    # ------------------------------------------------------------------------------ manifest

    def window_counts(self, verdict: Verdict, manifest: "DeploymentManifest") -> dict[str, int]:
        """What one decided image adds to the window's task counters (none for most tasks)."""
        return {}

    def check_legacy(self, manifest: "DeploymentManifest") -> None:
        """Raise ValueError when the manifest's top-level decision fields do not suit this task."""

    def check_params(self, params: DecoderParams) -> None:
        """Raise ValueError when a ``decoder`` block's (already typed) parameters are not usable."""

    def check_decoder_block(self, manifest: "DeploymentManifest") -> None:
        """Validate the ``decoder`` block, when there is one: its version, its parameters, and that it
        agrees with the legacy fields (which every manifest keeps, so older logic reads the same)."""
        block = manifest.decoder
        if block is None:
            return
        name = self.task.value
        if block.version not in self.block_versions:
            raise ValueError(
                f"the {name!r} decoder block has version {block.version}; this device reads version(s) "
                f"{sorted(self.block_versions)}; update the edge agent"
            )
        try:
            params = self.params_model.model_validate(block.params())
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'block'}: {error['msg']}" for error in exc.errors()
            )
            raise ValueError(
                f"the {name!r} decoder block is not valid ({problems}; parameters: "
                f"{', '.join(self.params_model.model_fields)}); rebuild the manifest with the current platform"
            ) from None
        self.check_params(params)
        legacy = self.legacy_params(manifest)
        differing = [
            f"decoder.{key} is {getattr(params, key)!r} but the manifest's {key} is {getattr(legacy, key)!r}"
            for key in self.params_model.model_fields
            if getattr(params, key) != getattr(legacy, key)
        ]
        if differing:
            raise ValueError(
                f"the {name!r} decoder block disagrees with the manifest ({'; '.join(differing)}); they must "
                "agree: rebuild the manifest with the current platform"
            )

    def foreign_field_problem(self, manifest: "DeploymentManifest") -> str | None:
        """Why another task's manifest must not carry one of :attr:`owned_fields`, or None."""
        for name in self.owned_fields:
            if (value := getattr(manifest, name)) is not None:
                return (
                    f"task {manifest.task.value!r} with {name} {value}: only {self.task.value!r} models carry a "
                    f"{name}; rebuild the manifest with the current platform"
                )
        return None

    def legacy_params(self, manifest: "DeploymentManifest") -> DecoderParams:
        """The parameters as the top-level fields state them (all a schema 1–3 manifest has)."""
        return self.params_model.model_validate({key: getattr(manifest, key) for key in self.params_model.model_fields})

    def params(self, manifest: "DeploymentManifest") -> DecoderParams:
        """The parameters to decide by: the ``decoder`` block, or, before schema 4, the legacy fields."""
        if manifest.decoder is None:
            return self.legacy_params(manifest)
        return self.params_model.model_validate(manifest.decoder.params())

    def block(self, params: DecoderParams) -> dict[str, Any]:
        """The ``decoder`` block the platform writes for ``params``."""
        return {"name": self.task.value, "version": self.block_version, **params.model_dump(mode="json")}

    def fields_for(self, params: DecoderParams) -> dict[str, Any]:
        """DeploymentManifest keyword fields for ``params``: schema 4, the legacy mirrors and the block."""
        return {
            "schema_version": DECODER_SCHEMA_VERSION,
            **params.model_dump(mode="json"),
            "decoder": self.block(params),
        }

    @abstractmethod
    def manifest_fields(self, calibrated_threshold: float | None) -> dict[str, Any]:
        """The manifest's decision fields for this task, from the validation report's calibrated
        threshold: ``schema_version``, the legacy top-level fields and the ``decoder`` block, as
        keyword arguments of ``DeploymentManifest``. Raises ValueError, saying what to do, when the
        threshold cannot make a manifest a device can decide by."""

    @abstractmethod
    def device_scores(self, raw_scores: Iterable[float], fields: Mapping[str, Any]) -> list[float]:
        """A report's raw per-image scores in the device's defect-score units ([0, 1]), given the
        fields :meth:`manifest_fields` returned: what the platform bins into baseline histograms."""

    # ------------------------------------------------------------------------------ device

    @abstractmethod
    def run(self, predictor: Predictor, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """The model's named outputs for one model input (uint8 H×W×3), checked to hold what
        :meth:`decode` reads; raises ``InferenceError`` when they do not."""

    @abstractmethod
    def decode(self, outputs: Mapping[str, np.ndarray], manifest: "DeploymentManifest") -> Verdict:
        """The verdict on one image from its named outputs (as :meth:`run` returned them)."""

    @abstractmethod
    def self_test(self, predictor: Predictor, path: Path, manifest: "DeploymentManifest") -> None:
        """Run the package's self-test (``selftest.npz`` at ``path``) and judge it against the
        platform's numbers; raises :class:`SelfTestMismatch` when this device does not run the
        validated model."""

    @abstractmethod
    def confirmed_defect_label(
        self, manifest: "DeploymentManifest", image: str, predicted_class: str
    ) -> tuple[str | None, str]:
        """The training label of an image the operator confirmed defective without naming its class,
        from the class the device recorded: ``(label, "")``, or ``(None, what the operator should
        append instead)``."""


def finite_positive(value: float | None) -> bool:
    """Whether ``value`` is a finite number above zero (a usable scale or raw threshold)."""
    return value is not None and math.isfinite(float(value)) and float(value) > 0


def read_selftest(path: Path, manifest: "DeploymentManifest", reference: str) -> tuple[np.ndarray, np.ndarray]:
    """The self-test's images (checked against the manifest's input) and its ``reference`` array (the
    platform's outputs on them, named by the task's decoder)."""
    version = manifest.model_version
    try:
        with np.load(path, allow_pickle=False) as data:
            images = np.asarray(data["images"])
            expected = np.asarray(data[reference])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise SelfTestMismatch(
            f"model {version}: cannot read {SELFTEST_FILE} with arrays 'images' and {reference!r} ({exc})"
        ) from exc
    spec = manifest.input
    want = (spec.height, spec.width, 3)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != want or len(images) == 0:
        raise SelfTestMismatch(
            f"model {version}: {SELFTEST_FILE} images must be uint8 N×{want[0]}×{want[1]}×3 with N >= 1, got "
            f"{images.dtype} {images.shape}; regenerate the package's self-test"
        )
    return images, expected
