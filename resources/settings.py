"""Where the platform keeps its state, and the switches that keep every library offline.

All state lives under ``MFG_HOME`` (default ``./.mfg``): Dagster home, the DuckDB file, Parquet
tables, artifacts, the landing zone and quarantine. Plants often have no internet, so the product
itself turns off every update check and telemetry call it knows of instead of trusting the shell.
"""

import logging
import os
import sys
from pathlib import Path

__all__ = ["OFFLINE_ENVIRONMENT", "apply_offline_switches", "mfg_home", "dagster_home"]

DEFAULT_HOME = ".mfg"

# Each of these was seen reaching for the network on a machine without one.
OFFLINE_ENVIRONMENT: dict[str, str] = {
    "NO_ALBUMENTATIONS_UPDATE": "1",  # albumentations queries the package index at import
    "GX_ANALYTICS_ENABLED": "false",  # great-expectations usage statistics
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",  # timm would try the hub for pretrained weights
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "OPENVINO_TELEMETRY": "0",
    "OV_TELEMETRY": "0",
    # onnxruntime >= 1.2x on Linux: without it, `import onnxruntime` writes a device id and an event
    # database under ~/.cache/Microsoft/DeveloperTools (its 1DS telemetry); read at import
    "ORT_DISABLE_TELEMETRY": "1",
    "NNCF_TELEMETRY": "0",
    "YOLO_OFFLINE": "1",  # ultralytics: no online checks, no downloads of fonts or assets
    "YOLO_AUTOINSTALL": "false",  # ultralytics: never `pip install` a missing requirement at run time
    "TORCH_HOME": "",  # filled in by apply_offline_switches: caches stay under MFG_HOME
    # filled in by apply_offline_switches: ultralytics keeps settings.json and fonts here (it appends
    # "Ultralytics"), not in ~/.config; resources/detect/yolo_env.py writes both before importing it
    "YOLO_CONFIG_DIR": "",
}
_TELEMETRY_WARNED: list[bool] = []  # warn once per process that openvino-telemetry was already imported
_FILLED_UNDER_HOME: dict[str, tuple[str, ...]] = {
    "TORCH_HOME": ("cache", "torch"),
    "YOLO_CONFIG_DIR": ("cache", "ultralytics"),
}


def mfg_home() -> Path:
    """The platform's state folder, absolute, from ``MFG_HOME`` or ``./.mfg``."""
    return Path(os.environ.get("MFG_HOME") or DEFAULT_HOME).expanduser().resolve()


def dagster_home(home: Path | None = None) -> Path:
    return (home or mfg_home()) / "dagster"


def apply_offline_switches(home: Path | None = None, *, write_home_consent: bool = True) -> None:
    """Set the offline and no-telemetry switches of every library the platform uses.

    Values a user already exported are left alone, except empty ones. ``write_home_consent=False``
    replaces the one switch that is a file in the user's home (the OpenVINO opt-out below) by
    :func:`_block_openvino_telemetry`, for callers that must leave the home untouched: the detection
    layer (``resources/detect/yolo_env.py``).
    """
    base = home or mfg_home()
    for key, value in OFFLINE_ENVIRONMENT.items():
        if key in _FILLED_UNDER_HOME:
            value = str(base.joinpath(*_FILLED_UNDER_HOME[key]))
        if not os.environ.get(key):
            os.environ[key] = value
    if write_home_consent:
        _disable_openvino_telemetry()
    else:
        _block_openvino_telemetry()


def _block_openvino_telemetry() -> None:
    """Make ``openvino_telemetry`` unimportable in this process, before openvino is imported.

    ``import openvino`` imports its converter, which starts openvino-telemetry and sends an "import"
    event; without a consent file that counts as consent, and it writes a client id and stats under
    ``~/intel``. OpenVINO falls back to its own no-op stub when the package cannot be imported, which a
    ``None`` entry in ``sys.modules`` causes, so nothing is sent and nothing is written. Too late once
    openvino is imported; then this only warns.
    """
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import raises ImportError
    elif sys.modules["openvino_telemetry"] is not None and not _TELEMETRY_WARNED:
        _TELEMETRY_WARNED.append(True)
        logging.getLogger(__name__).warning(
            "openvino-telemetry was imported before the offline switches were applied; its consent "
            "file under ~/intel decides whether OpenVINO sends telemetry in this process"
        )


def _disable_openvino_telemetry() -> None:
    """openvino-telemetry keeps its consent in a file under the home folder; opt out there too."""
    consent_dir = Path.home() / "intel"
    consent_file = consent_dir / "openvino_telemetry"
    if consent_file.exists():
        return
    try:
        consent_dir.mkdir(parents=True, exist_ok=True)
        consent_file.write_text("0")
    except OSError as exc:
        # The env switches above still disable telemetry; say so rather than fail the platform.
        logging.getLogger(__name__).warning(
            "could not write the OpenVINO telemetry opt-out %s (%s); the environment switches still apply",
            consent_file,
            exc,
        )
