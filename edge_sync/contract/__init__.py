"""The contract between the platform and its edge devices: every rule both sides use, in one place.

* :mod:`~edge_sync.contract.names`: line, variant, device, model-version and label names;
* :mod:`~edge_sync.contract.manifest`: deployment manifests (tasks, formats, rings, input spec, the
  package layout and the decision fields), with their checks;
* :mod:`~edge_sync.contract.hold`: hold orders (run no model; parts go to manual inspection);
* :mod:`~edge_sync.contract.signing`: ed25519 signatures over the manifest's canonical JSON;
* :mod:`~edge_sync.contract.windows`: metric windows and how scores and brightness are binned;
* :mod:`~edge_sync.contract.imaging`: how a decoded image becomes a model input;
* :mod:`~edge_sync.contract.decoders`: one decoder per task (its manifest parameters, how its model
  outputs become a verdict, its self-test); the only task-specific code of the device.

The platform imports these to build what it sends; the device imports them to check what it gets.
"""

from edge_sync.contract.hold import HOLD_KIND, HoldOrder, is_hold_payload
from edge_sync.contract.manifest import (
    DECODER_SCHEMA_VERSION,
    MAX_PACKAGE_PATH,
    MODEL_FORMATS,
    SCHEMA_VERSION,
    SELFTEST_FILE,
    SUPPORTED_SCHEMA_VERSIONS,
    ContractError,
    DecoderBlock,
    DeploymentManifest,
    InputSpec,
    ModelFile,
    Ring,
    SignatureInvalid,
    SignedManifest,
    Task,
    UnknownSchemaVersion,
    package_layout_problem,
)
from edge_sync.contract.names import (
    LABEL,
    MODEL_VERSION,
    NAME,
    InvalidName,
    check_label,
    check_model_version,
    check_name,
)
from edge_sync.contract.signing import (
    canonical_json,
    generate_keypair,
    load_private_key,
    load_public_key,
    sign_hold,
    sign_manifest,
    verify_hold,
    verify_manifest,
)
from edge_sync.contract.windows import (
    INPUT_BINS,
    MAX_WINDOW_COUNT,
    MAX_WINDOW_DURATION,
    SCORE_BINS,
    MetricWindow,
    brightness_bin,
    brightness_histogram,
    input_brightness,
    score_bin,
    score_histogram,
)

# The decoders come last: they build on the manifest.
from edge_sync.contract.decoders import DECODERS, Decoder, SelfTestMismatch, UnsupportedTask, Verdict, decoder_for  # noqa: E402

__all__ = [
    "HOLD_KIND",
    "HoldOrder",
    "is_hold_payload",
    "sign_hold",
    "verify_hold",
    "INPUT_BINS",
    "LABEL",
    "MAX_PACKAGE_PATH",
    "MAX_WINDOW_COUNT",
    "MAX_WINDOW_DURATION",
    "MODEL_FORMATS",
    "MODEL_VERSION",
    "NAME",
    "DECODERS",
    "DECODER_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "SCORE_BINS",
    "SELFTEST_FILE",
    "SUPPORTED_SCHEMA_VERSIONS",
    "ContractError",
    "Decoder",
    "DecoderBlock",
    "DeploymentManifest",
    "InputSpec",
    "InvalidName",
    "MetricWindow",
    "ModelFile",
    "Ring",
    "SignatureInvalid",
    "SelfTestMismatch",
    "SignedManifest",
    "Task",
    "UnknownSchemaVersion",
    "UnsupportedTask",
    "Verdict",
    "brightness_bin",
    "brightness_histogram",
    "canonical_json",
    "check_label",
    "check_model_version",
    "check_name",
    "decoder_for",
    "generate_keypair",
    "input_brightness",
    "load_private_key",
    "load_public_key",
    "package_layout_problem",
    "score_bin",
    "score_histogram",
    "sign_manifest",
    "verify_manifest",
]
