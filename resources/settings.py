"""Where the platform keeps its state, and the switches that keep every library offline.

All state lives under ``MFG_HOME`` (default ``./.mfg``): Dagster home, the DuckDB file, Parquet
tables, artifacts, the landing zone and quarantine. Plants often have no internet, so the product
itself turns off every update check and telemetry call it knows of instead of trusting the shell.
"""

import logging
import os
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
    "NNCF_TELEMETRY": "0",
    "YOLO_OFFLINE": "1",
    "TORCH_HOME": "",  # filled in by apply_offline_switches: caches stay under MFG_HOME
}


def mfg_home() -> Path:
    """The platform's state folder, absolute, from ``MFG_HOME`` or ``./.mfg``."""
    return Path(os.environ.get("MFG_HOME") or DEFAULT_HOME).expanduser().resolve()


def dagster_home(home: Path | None = None) -> Path:
    return (home or mfg_home()) / "dagster"


def apply_offline_switches(home: Path | None = None) -> None:
    """Set the offline and no-telemetry switches of every library the platform uses.

    Values a user already exported are left alone, except empty ones.
    """
    base = home or mfg_home()
    for key, value in OFFLINE_ENVIRONMENT.items():
        if key == "TORCH_HOME":
            value = str(base / "cache" / "torch")
        if not os.environ.get(key):
            os.environ[key] = value
    _disable_openvino_telemetry()


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
