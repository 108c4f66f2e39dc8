"""Keep ultralytics offline and out of the user's home, before it is imported.

ultralytics decides at import time where its settings live (``YOLO_CONFIG_DIR``, else
``~/.config/Ultralytics``), whether it is online (``YOLO_OFFLINE``) and whether it may ``pip install``
a missing requirement (``YOLO_AUTOINSTALL``); on first import it writes a ``settings.json`` with
telemetry ("sync") and seven logger integrations switched on, and every detection dataset check
downloads ``Arial.ttf`` into that folder. A plant PC has no internet and its operator's home is not
ours, so :func:`prepare_ultralytics` sets all of that up first:

* the offline switches of :mod:`resources.settings` (``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=false``,
  ``ORT_DISABLE_TELEMETRY=1``, ``TORCH_HOME`` and ``YOLO_CONFIG_DIR`` under ``MFG_HOME``), with
  openvino-telemetry blocked from importing instead of an opt-out file in the home folder (``import
  openvino`` would otherwise write a client id to ``~/intel`` and send an event);
* ``settings.json`` written by us with sync, the platform key and every integration off and the
  runs/datasets/weights folders under ``MFG_HOME`` (ultralytics keeps a file whose keys, types and
  version match its schema as it is);
* a TTF that ships inside matplotlib's wheel copied as ``Arial.ttf`` and ``Arial.Unicode.ttf`` into
  the config folder, so ``check_font`` finds it and never downloads;
* ``MPLCONFIGDIR`` under ``MFG_HOME`` (matplotlib writes its font cache there, not ``~/.cache``) and
  ``ULTRALYTICS_API_KEY`` removed from the environment (it would stream a training to the cloud).

Training arguments that matter for the same reason (``plots=False``, ``workers=0``, ``amp`` only on
CUDA, ``project=`` a run folder) are set by ``yolo_train``; nothing runs in the working directory.
"""

import importlib.metadata
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from resources.detect.yolo_errors import DetectorConfigError
from resources.settings import apply_offline_switches, mfg_home

__all__ = ["FONT_NAMES", "SETTINGS_VERSION", "prepare_ultralytics", "ultralytics_config_dir"]

logger = logging.getLogger(__name__)

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
"""The font files ultralytics' ``check_font`` looks for (the second for non-ASCII class names)."""

SETTINGS_VERSION = "0.0.8"
"""ultralytics 8.4's settings schema version; a file with another version is rewritten by it."""

_FONT_SOURCE = ("matplotlib", "matplotlib/mpl-data/fonts/ttf/DejaVuSans.ttf")
_WARNED: set[tuple[Path, Path]] = set()  # (used, asked) config folders already warned about
_INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


def ultralytics_config_dir() -> Path:
    """The folder ultralytics uses for settings and fonts: ``$YOLO_CONFIG_DIR/Ultralytics``."""
    root = os.environ.get("YOLO_CONFIG_DIR")
    if not root:
        raise DetectorConfigError("YOLO_CONFIG_DIR is not set; call prepare_ultralytics() before using ultralytics")
    return Path(root).expanduser() / "Ultralytics"


def prepare_ultralytics(home: Path | None = None) -> Path:
    """Make ultralytics offline and home-free; returns its config folder. Call before importing it.

    Safe to call many times. When ultralytics is already imported in this process (its config
    folder is then fixed), the settings and fonts are written into the folder it actually uses and
    its live settings are switched off too; a warning says so when that folder is not the one asked for.
    """
    base = Path(home) if home is not None else mfg_home()
    apply_offline_switches(base, write_home_consent=False)
    if not os.environ.get("MPLCONFIGDIR"):
        os.environ["MPLCONFIGDIR"] = str(base / "cache" / "matplotlib")
    # ultralytics' own console output (per-batch progress bars, tables) stays off: the platform logs
    # one line per epoch through the step's log, which the CLI's progress line and the UI show
    os.environ.setdefault("YOLO_VERBOSE", "False")
    if os.environ.pop("ULTRALYTICS_API_KEY", None):
        logger.warning("ULTRALYTICS_API_KEY was set; removed it so no training is streamed off this machine")
    wanted = ultralytics_config_dir()
    config_dir = wanted
    if "ultralytics.utils" in sys.modules:
        config_dir = Path(sys.modules["ultralytics.utils"].USER_CONFIG_DIR)
        if config_dir.resolve() != wanted.resolve() and (config_dir, wanted) not in _WARNED:
            _WARNED.add((config_dir, wanted))
            logger.warning(
                "ultralytics was imported before prepare_ultralytics() and uses %s instead of %s; "
                "writing the offline settings and fonts there", config_dir, wanted
            )
    data_root = base / "cache" / "ultralytics-data"
    _write_settings(config_dir / "settings.json", data_root)
    _place_fonts(config_dir)
    if "ultralytics.utils" in sys.modules:
        _switch_off_live_settings()
    _restore_pil_open()
    return config_dir


def _restore_pil_open() -> None:
    """Undo ultralytics' process-wide replacement of ``PIL.Image.open``.

    On import, ultralytics swaps ``PIL.Image.open`` for a wrapper that, on an unreadable image,
    tries to ``pip install pi-heif`` and import it: in a platform process that also ingests images,
    a corrupt upload then raised ``ModuleNotFoundError: pi_heif`` instead of PIL's
    ``UnidentifiedImageError``, and the file was not quarantined with its reason. Its patches module
    is imported here (after the settings above are in place) and PIL's own ``open`` put back.
    """
    import importlib

    from PIL import Image

    patches = importlib.import_module("ultralytics.utils.patches")
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original


def _write_settings(path: Path, data_root: Path) -> None:
    """Write ultralytics' settings file with every network feature off (kept if already so)."""
    settings = {
        "settings_version": SETTINGS_VERSION,
        "datasets_dir": str(data_root / "datasets"),
        "weights_dir": str(data_root / "weights"),
        "runs_dir": str(data_root / "runs"),
        "uuid": "",  # the anonymised machine id it would send with telemetry: none
        "sync": False,
        "api_key": "",
        "openai_api_key": "",
        **{name: False for name in _INTEGRATIONS},
        "vscode_msg": False,
        "openvino_msg": False,
    }
    try:
        if path.is_file() and json.loads(path.read_text(encoding="utf-8")) == settings:
            return
    except (OSError, ValueError):
        pass  # unreadable or not JSON: rewrite it below
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    os.replace(partial, path)


def _place_fonts(config_dir: Path) -> None:
    """Copy matplotlib's bundled DejaVuSans as the two Arial files ultralytics would download."""
    missing = [config_dir / name for name in FONT_NAMES if not (config_dir / name).is_file()]
    if not missing:
        return
    package, member = _FONT_SOURCE
    try:
        source = Path(str(importlib.metadata.distribution(package).locate_file(member)))
    except importlib.metadata.PackageNotFoundError:
        source = Path("/nonexistent")
    if not source.is_file():
        raise DetectorConfigError(
            f"the font {member} of the {package} wheel is missing ({source}); ultralytics would try to download "
            f"Arial.ttf without it: reinstall {package} from requirements.lock"
        )
    for target in missing:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, target)


def _switch_off_live_settings() -> None:
    """ultralytics already imported: its in-memory SETTINGS were read before our file; turn them off."""
    from ultralytics.utils import SETTINGS

    wanted = {"sync": False, "api_key": "", **{name: False for name in _INTEGRATIONS}}
    if any(SETTINGS.get(key) != value for key, value in wanted.items()):
        SETTINGS.update(wanted)
