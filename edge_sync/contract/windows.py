"""Metric windows and the histograms in them: the counts a device reports and how it bins them.

Windows carry **counts** (never ratios), so windows from many devices add up exactly, and a window
id makes each upload idempotent. The platform's baseline histograms (defect scores on the test
split, brightness of the training images) are binned by the same functions as the device's, so
population-stability indices compare like with like: the brightness of an image is the mean of its
**model input** (the pixels :func:`~edge_sync.contract.imaging.fit_to_input` produced), on both sides.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    field_validator,
    model_serializer,
    model_validator,
)

from edge_sync.contract.names import MODEL_VERSION, NAME

__all__ = [
    "COUNTER_NAME",
    "INPUT_BINS",
    "MAX_COUNTERS",
    "MAX_WINDOW_COUNT",
    "MAX_WINDOW_DURATION",
    "SCORE_BINS",
    "MetricWindow",
    "brightness_bin",
    "brightness_histogram",
    "input_brightness",
    "score_bin",
    "score_histogram",
]

SCORE_BINS = 20  # defect-score histogram: 20 equal bins over [0, 1]
MAX_WINDOW_COUNT = 10_000_000
"""Most images (or verdicts) one window may count: 100 a second for a day is 8.6 million. Anything
above is a device bug, and unbounded counts would overflow the warehouse's 64-bit columns."""
MAX_WINDOW_DURATION = timedelta(days=7)
"""Longest a window may span (the agent closes one after at most a day; a week allows for downtime)."""
MAX_COUNTERS = 64
"""Most task counters one window may carry (a detector's boxes, in all and per class)."""
COUNTER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,99}$"
"""A task counter's name: ``boxes``, ``boxes:scratch`` (a class name after the colon)."""

INPUT_BINS = 16  # mean-brightness histogram of model inputs: 16 equal bins of 16 grey levels over [0, 256)


def score_bin(score: float) -> int:
    """Bin of a defect score in [0, 1]: ``floor(score * SCORE_BINS)``, 1.0 in the last bin."""
    return min(max(int(float(score) * SCORE_BINS), 0), SCORE_BINS - 1)


def brightness_bin(brightness: float) -> int:
    """Bin of a mean brightness in [0, 255]: ``floor(brightness / 16)``, so 239.5 is bin 14 everywhere."""
    return min(max(int(float(brightness) * INPUT_BINS / 256.0), 0), INPUT_BINS - 1)


def input_brightness(pixels: np.ndarray) -> float:
    """Mean grey level of one model input (uint8 H×W×3): what both sides bin for brightness drift."""
    return float(np.asarray(pixels, dtype=np.float64).mean())


def score_histogram(scores: Iterable[float]) -> list[int]:
    """Counts of :func:`score_bin` over ``scores``."""
    counts = [0] * SCORE_BINS
    for score in scores:
        counts[score_bin(score)] += 1
    return counts


def brightness_histogram(brightness: Iterable[float]) -> list[int]:
    """Counts of :func:`brightness_bin` over mean brightness values."""
    counts = [0] * INPUT_BINS
    for value in brightness:
        counts[brightness_bin(value)] += 1
    return counts


class MetricWindow(BaseModel):
    """Counts a device observed over one window. Ratios are computed on the platform from sums."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_id: str = Field(
        min_length=1, max_length=200, description="device-unique id; the server keeps the first upload of an id"
    )
    device_id: str = Field(pattern=NAME.pattern)
    line: str = Field(pattern=NAME.pattern)
    model_version: str = Field(pattern=MODEL_VERSION.pattern)
    started_at: datetime = Field(description="device clock; the server also records its own receive time")
    ended_at: datetime
    inspected: int = Field(ge=0, le=MAX_WINDOW_COUNT)
    rejected: int = Field(ge=0, le=MAX_WINDOW_COUNT, description="at most inspected")
    # Verdicts are counted in the window in which the operator gave them, so they may judge images of
    # an earlier window: they are bounded, but not by this window's rejected.
    confirmed_defects: int = Field(ge=0, le=MAX_WINDOW_COUNT, description="rejections an operator confirmed as real defects")
    false_rejects: int = Field(ge=0, le=MAX_WINDOW_COUNT, description="rejections an operator marked as good parts")
    escapes_found: int = Field(ge=0, le=MAX_WINDOW_COUNT, description="passed parts found defective at audit")
    score_histogram: tuple[int, ...] = Field(description=f"{SCORE_BINS} bins of the defect score over [0, 1]")
    input_brightness_histogram: tuple[int, ...] = Field(
        description=f"{INPUT_BINS} bins of the model input's mean brightness (brightness_bin)"
    )
    counters: dict[str, StrictInt] = Field(
        default_factory=dict,
        description="the task decoder's own counts (its window_counters), e.g. a detector's boxes in all and per class",
    )

    @field_validator("counters")
    @classmethod
    def _counters(cls, value: dict[str, int]) -> dict[str, int]:
        import re

        if len(value) > MAX_COUNTERS:
            raise ValueError(f"counters holds {len(value)} names; at most {MAX_COUNTERS}")
        for name, count in value.items():
            if not re.fullmatch(COUNTER_NAME, name):
                raise ValueError(f"counter name {name!r} is not valid (letters, digits, '_', '.', ':', '+', '-'; up to 100)")
            if not 0 <= count <= 1000 * MAX_WINDOW_COUNT:
                raise ValueError(f"counter {name!r} is {count}; it must be in 0..{1000 * MAX_WINDOW_COUNT}")
        return value

    @model_serializer(mode="wrap")
    def _without_empty_counters(self, handler: SerializerFunctionWrapHandler) -> dict:
        """No ``counters`` key when a task counts nothing of its own: such a window serialises as before,
        so a sync server that predates counters still takes it."""
        data = handler(self)
        if not self.counters:
            data.pop("counters", None)
        return data

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

    @model_validator(mode="after")
    def _consistent(self) -> "MetricWindow":
        """Counts that add up and times in order: a window that does not is a device bug, refused
        whole, because one absurd window would corrupt every ratio and drift figure it joins."""
        problems = []
        if self.rejected > self.inspected:
            problems.append(f"rejected {self.rejected} > inspected {self.inspected}")
        for name in ("score_histogram", "input_brightness_histogram"):
            total = sum(getattr(self, name))
            if total != self.inspected:
                problems.append(f"{name} adds up to {total}, not inspected {self.inspected} (one bin per image)")
        if (self.started_at.tzinfo is None) != (self.ended_at.tzinfo is None):
            problems.append("started_at and ended_at must both carry a UTC offset")
        elif self.ended_at < self.started_at:
            problems.append(f"ended_at {self.ended_at.isoformat()} is before started_at {self.started_at.isoformat()}")
        elif self.ended_at - self.started_at > MAX_WINDOW_DURATION:
            problems.append(
                f"the window spans {self.ended_at - self.started_at}, over {MAX_WINDOW_DURATION.days} days"
            )
        if problems:
            raise ValueError(f"window {self.window_id!r}: " + "; ".join(problems))
        return self
