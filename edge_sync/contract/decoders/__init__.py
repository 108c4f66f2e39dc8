"""One decoder per task: the only device-side code that knows how a task's model outputs become a verdict.

:data:`DECODERS` maps each task a device can run to its :class:`Decoder`; adding a task is one
module here and one line in that dict. The rest of the device (agent, server, inference, the other
contract modules) calls :func:`decoder_for` and never names a task. The platform calls the same
decoders to write a manifest's decision fields (:meth:`Decoder.manifest_fields`) and to put a
report's scores into the device's units (:meth:`Decoder.device_scores`), so both sides share one
definition of every task's parameters.
"""

from typing import TYPE_CHECKING

from edge_sync.contract.decoders.anomaly import ANOMALY_SCHEMA_VERSION, AnomalyDecoder, anomaly_defect_score
from edge_sync.contract.decoders.base import Decoder, DecoderParams, SelfTestMismatch, Verdict, read_selftest
from edge_sync.contract.decoders.classify import ClassifyDecoder
from edge_sync.contract.decoders.detect import DetectDecoder
from edge_sync.contract.manifest import ContractError, Task

if TYPE_CHECKING:
    from edge_sync.contract.manifest import DeploymentManifest

__all__ = [
    "ANOMALY_SCHEMA_VERSION",
    "DECODERS",
    "Decoder",
    "DecoderParams",
    "SelfTestMismatch",
    "UnsupportedTask",
    "Verdict",
    "anomaly_defect_score",
    "check_decoder_block",
    "check_task_fields",
    "decoder_for",
    "read_selftest",
]

DECODERS: dict[Task, Decoder] = {
    Task.CLASSIFY: ClassifyDecoder(),
    Task.ANOMALY: AnomalyDecoder(),
    Task.DETECT: DetectDecoder(),
}
"""The tasks this code base can decode, and how. A device runs exactly these tasks."""


class UnsupportedTask(ContractError):
    """No decoder for the task: this device (or platform) cannot run its models."""


def decoder_for(task: Task | str) -> Decoder:
    """The decoder of ``task`` (a :class:`Task` or its value)."""
    try:
        return DECODERS[Task(task)]
    except (KeyError, ValueError):
        known = ", ".join(sorted(t.value for t in DECODERS))
        raise UnsupportedTask(
            f"no decoder for task {str(task)!r} (decoders: {known}); a model of this task cannot be run here: "
            "update the edge agent, or deploy a model of one of those tasks"
        ) from None


def check_task_fields(manifest: "DeploymentManifest") -> None:
    """The top-level decision fields of one manifest against its task (called by its validation): no
    other task's fields, and what the own decoder needs. A task without a decoder here gets no task
    checks: a device refuses it by its task before it downloads anything."""
    own = DECODERS.get(manifest.task)
    for decoder in DECODERS.values():
        if decoder is not own and (problem := decoder.foreign_field_problem(manifest)):
            raise ValueError(problem)
    if own is not None:
        own.check_legacy(manifest)


def check_decoder_block(manifest: "DeploymentManifest") -> None:
    """The manifest's ``decoder`` block against its task's decoder (called by its validation, once
    the top-level fields are known to be sound, as the block must agree with them)."""
    own = DECODERS.get(manifest.task)
    if own is not None:
        own.check_decoder_block(manifest)
