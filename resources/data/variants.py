"""Product variants: the taxonomy (classes, which one is "good") each line/variant is trained on.

A variant is registered once (``mfgv onboard`` does it) and stored as JSON under
``MFG_HOME/variants/<line>/<variant>.json``; the annotation checks hold every label to it. Its
taxonomy may grow (:func:`add_class`, ``mfgv variant add-class``): each change is a new ``version``,
and every version is appended to ``<variant>.history.jsonl`` beside it, for the audit trail.
"""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_sync.contract.names import NAME, InvalidName
from resources.settings import mfg_home
from resources.errors import MfgVisionError

__all__ = [
    "NAME_PATTERN",
    "UnknownVariant",
    "VariantRefused",
    "VariantSpec",
    "add_class",
    "variant_history",
    "load_run_config",
    "load_variant",
    "partition_key",
    "run_config_path",
    "save_run_config",
    "save_variant",
    "split_partition_key",
    "validate_name",
]

NAME_PATTERN = NAME  # one rule for the platform, the sync server and the device (edge_sync.contract.names)
PARTITION_SEPARATOR = "."


class UnknownVariant(MfgVisionError, LookupError):
    pass


class VariantRefused(MfgVisionError, ValueError):
    """A change to a variant that cannot be made (a class it has already)."""


def validate_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidName(
            f"{kind} name {value!r} is not valid: use letters, digits, '-' and '_' "
            f"(1-63 characters, starting with a letter or digit), e.g. 'line1' or 'bracket-a'"
        )
    return value


def partition_key(line: str, variant: str) -> str:
    """The Dagster partition key of a line/variant: ``<line>.<variant>``."""
    return f"{validate_name('line', line)}{PARTITION_SEPARATOR}{validate_name('variant', variant)}"


def split_partition_key(key: str) -> tuple[str, str]:
    parts = key.split(PARTITION_SEPARATOR)
    if len(parts) != 2:
        raise ValueError(f"partition key {key!r} is not of the form <line>.<variant>")
    return validate_name("line", parts[0]), validate_name("variant", parts[1])


class VariantSpec(BaseModel):
    """What a line/variant's model must learn."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line: str
    variant: str
    task: str = Field("classify", description="the inspection task (resources.tasks); classify in this release")
    classes: tuple[str, ...] = Field(description="the taxonomy: every label must be one of these")
    good_class: str | None = Field(
        None, description="class of acceptable parts; None when every class is a defect type"
    )
    label_format: str = Field("auto", description="auto, folders, csv or coco")
    version: int = Field(1, ge=1, description="taxonomy version: 1 at registration, +1 for each added class")

    @field_validator("line", "variant")
    @classmethod
    def _names(cls, value: str) -> str:
        return validate_name("line/variant", value)

    @field_validator("task")
    @classmethod
    def _task(cls, value: str) -> str:
        from resources.tasks import engine_for

        engine_for(value)  # an unknown task, or one without an engine yet, is refused here
        return value

    @model_validator(mode="after")
    def _taxonomy(self) -> "VariantSpec":
        from resources.tasks import engine_for

        if problems := engine_for(self.task).variant_problems(self.classes, self.good_class):
            raise ValueError(f"variant {self.line}/{self.variant} ({self.task}): {'; '.join(problems)}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"variant {self.line}/{self.variant}: duplicate class names in {self.classes}")
        if self.good_class is not None and self.good_class not in self.classes:
            raise ValueError(
                f"good class {self.good_class!r} is not among the classes "
                f"{', '.join(self.classes)}; pass one of them as --good-class"
            )
        return self

    @property
    def partition(self) -> str:
        return partition_key(self.line, self.variant)


def _variant_path(line: str, variant: str, home: Path | None) -> Path:
    return (home or mfg_home()) / "variants" / validate_name("line", line) / f"{validate_name('variant', variant)}.json"


def save_variant(spec: VariantSpec, home: Path | None = None) -> Path:
    """Write the variant (atomically) and append it to its history unless that version is there already."""
    from edge_sync.durable import write_atomic

    path = _variant_path(spec.line, spec.variant, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = spec.model_dump(mode="json")
    if not any(old.get("version", 1) == spec.version for old in variant_history(spec.line, spec.variant, home)):
        with path.with_suffix(".history.jsonl").open("a", encoding="utf-8") as history:
            history.write(json.dumps({**record, "saved_at": datetime.now(UTC).isoformat()}, sort_keys=True) + "\n")
    write_atomic(path, json.dumps(record, indent=2, sort_keys=True).encode())
    return path


def variant_history(line: str, variant: str, home: Path | None = None) -> list[dict]:
    """Every saved version of the variant, oldest first (empty before it is registered)."""
    path = _variant_path(line, variant, home).with_suffix(".history.jsonl")
    if not path.exists():
        return []
    return [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines() if raw.strip()]


def add_class(line: str, variant: str, name: str, home: Path | None = None) -> VariantSpec:
    """Grow the variant's taxonomy by class ``name``; returns the new version (saved).

    Existing classes keep their order, so class indices of registered models stay meaningful; the
    new class is last. The next run trains on the grown taxonomy (it needs images of the new class).
    """
    from edge_sync.contract.names import check_label

    spec = load_variant(line, variant, home)
    check_label(name)
    if name in spec.classes:
        raise VariantRefused(
            f"variant {line}/{variant} already has class {name!r} (version {spec.version}: {', '.join(spec.classes)})"
        )
    grown = spec.model_copy(update={"classes": (*spec.classes, name), "version": spec.version + 1})
    grown = VariantSpec.model_validate(grown.model_dump())
    save_variant(grown, home)
    return grown


def run_config_path(line: str, variant: str, home: Path | None = None) -> Path:
    """Where the variant's saved onboard options live: beside the variant files, one level down, so
    ``variants/*/*.json`` still lists only variants."""
    return (home or mfg_home()) / "variants" / validate_name("line", line) / "run_configs" / f"{validate_name('variant', variant)}.json"


def save_run_config(line: str, variant: str, run_config: dict[str, Any], home: Path | None = None) -> Path:
    """Keep the run config of the variant's latest ``mfgv onboard`` (its recipe: backbone, input size,
    feature source, release limits...), so the runs sensors start for it (a new batch, a retrain
    asked by the edge loop) train it the way the plant chose, not with the defaults."""
    from edge_sync.durable import write_atomic

    path = run_config_path(line, variant, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(run_config, indent=2, sort_keys=True).encode())
    return path


def load_run_config(line: str, variant: str, home: Path | None = None) -> dict[str, Any]:
    """The variant's saved run config (``{}`` for a variant onboarded before run configs were kept:
    its runs take the defaults, as they did)."""
    path = run_config_path(line, variant, home)
    if not path.exists():
        return {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise VariantRefused(
            f"{path}: the variant's saved run config is not JSON ({exc}); fix or delete it, or rerun `mfgv onboard` "
            f"for {line}/{variant} to write it again"
        ) from exc
    if not isinstance(loaded, dict):
        raise VariantRefused(f"{path}: the variant's saved run config must be a JSON object; rerun `mfgv onboard` for {line}/{variant}")
    return _renamed_fields(loaded)


# Recipe fields saved under an older name: read under the current one, so a variant onboarded before
# the rename keeps its choices (the file itself is left as it was written).
_RENAMED_RECIPE_FIELDS = {"anomaly": "task_settings"}


def _renamed_fields(config: dict[str, Any]) -> dict[str, Any]:
    recipe = ((config.get("ops") or {}).get("hyperparameter_search") or {}).get("config")
    if isinstance(recipe, dict):
        for old, new in _RENAMED_RECIPE_FIELDS.items():
            if old in recipe and new not in recipe:
                recipe[new] = recipe.pop(old)
    return config


def load_variant(line: str, variant: str, home: Path | None = None) -> VariantSpec:
    path = _variant_path(line, variant, home)
    if not path.exists():
        raise UnknownVariant(
            f"variant {line}/{variant} is not registered ({path} does not exist); register it with "
            f"`mfgv onboard DATA_DIR --line {line} --variant {variant}`"
        )
    return VariantSpec.model_validate_json(path.read_text())
