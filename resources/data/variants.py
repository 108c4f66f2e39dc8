"""Product variants: the taxonomy (classes, which one is "good") each line/variant is trained on.

A variant is registered once (``mfgv onboard`` does it) and stored as JSON under
``MFG_HOME/variants/<line>/<variant>.json``; the annotation checks hold every label to it.
"""

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_sync.contract.names import NAME, InvalidName
from resources.settings import mfg_home
from resources.errors import MfgVisionError

__all__ = [
    "NAME_PATTERN",
    "UnknownVariant",
    "VariantSpec",
    "load_variant",
    "partition_key",
    "save_variant",
    "split_partition_key",
    "validate_name",
]

NAME_PATTERN = NAME  # one rule for the platform, the sync server and the device (edge_sync.contract.names)
PARTITION_SEPARATOR = "."


class UnknownVariant(MfgVisionError, LookupError):
    pass


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
    path = _variant_path(spec.line, spec.variant, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec.model_dump(mode="json"), indent=2, sort_keys=True))
    return path


def load_variant(line: str, variant: str, home: Path | None = None) -> VariantSpec:
    path = _variant_path(line, variant, home)
    if not path.exists():
        raise UnknownVariant(
            f"variant {line}/{variant} is not registered ({path} does not exist); register it with "
            f"`mfgv onboard DATA_DIR --line {line} --variant {variant}`"
        )
    return VariantSpec.model_validate_json(path.read_text())
