"""Metric windows on the device: the open window's counts and the state file that holds them.

A window opens at its first image or feedback line (so no empty window is sent), counts decisions,
operator verdicts and the two histograms in the contract's bins, and is closed into a
:class:`~edge_sync.contract.MetricWindow` once it is old or full. ``agent_state.json`` holds the open
window together with the feedback cursor, written atomically as one file, so window counts and the
cursor never disagree after a crash (a crash loses at most the pass in progress).
"""

import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_sync.contract import INPUT_BINS, SCORE_BINS, MetricWindow, brightness_bin, score_bin
from edge_sync.durable import write_atomic

__all__ = ["AgentState", "OpenWindow", "StateFile", "closed_window", "count_decision", "new_window"]

logger = logging.getLogger(__name__)


class OpenWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_id: str
    model_version: str
    line: str
    started_at: datetime
    inspected: int = 0
    rejected: int = 0
    confirmed_defects: int = 0
    false_rejects: int = 0
    escapes_found: int = 0
    score_histogram: list[int] = Field(default_factory=lambda: [0] * SCORE_BINS)
    input_brightness_histogram: list[int] = Field(default_factory=lambda: [0] * INPUT_BINS)
    counters: dict[str, int] = Field(default_factory=dict)


class AgentState(BaseModel):
    """``agent_state.json``: the open window, the window sequence and the feedback cursor."""

    model_config = ConfigDict(extra="forbid")

    next_seq: int = 0
    window: OpenWindow | None = None
    feedback_offset: int = 0
    feedback_line: int = 0
    feedback_seen: list[tuple[str, str]] = Field(default_factory=list)
    # (image, verdict) pairs whose image was queued with a label: a later line that adds a label to an
    # already counted pair queues the image without counting the verdict twice.
    feedback_labelled: list[tuple[str, str]] = Field(default_factory=list)


class StateFile:
    """Reads and writes ``agent_state.json``; an unreadable file is moved aside, never lost."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> AgentState:
        if not self.path.is_file():
            return AgentState()
        try:
            return AgentState.model_validate_json(self.path.read_bytes())
        except ValidationError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            logger.error(
                "%s is unreadable (%s); moved it to %s and started a fresh window and feedback cursor "
                "(feedback already counted may be counted again)",
                self.path,
                exc,
                aside,
            )
            return AgentState()

    def save(self, state: AgentState) -> None:
        write_atomic(self.path, state.model_dump_json().encode())


def new_window(state: AgentState, device_id: str, model_version: str, line: str, started: datetime) -> OpenWindow:
    """Open the next window of ``state`` (ids are unique per device: time plus sequence number)."""
    seq = state.next_seq
    state.next_seq += 1
    state.window = OpenWindow(
        window_id=f"{device_id}-{started.astimezone(UTC):%Y%m%dT%H%M%SZ}-{seq}",
        model_version=model_version,
        line=line,
        started_at=started,
    )
    return state.window


def count_decision(
    window: OpenWindow, *, rejected: bool, defect_score: float, brightness: float, counts: Mapping[str, int] | None = None
) -> None:
    """Add one inspected image to the window, in the contract's bins, with the task decoder's own counts."""
    for name, count in (counts or {}).items():
        window.counters[name] = window.counters.get(name, 0) + int(count)
    window.inspected += 1
    window.rejected += rejected
    window.score_histogram[score_bin(defect_score)] += 1
    window.input_brightness_histogram[brightness_bin(brightness)] += 1


def closed_window(window: OpenWindow, device_id: str, ended_at: datetime) -> MetricWindow:
    """The window as the contract's record, ended at ``ended_at`` (never before it started)."""
    return MetricWindow(
        window_id=window.window_id,
        device_id=device_id,
        line=window.line,
        model_version=window.model_version,
        started_at=window.started_at,
        ended_at=max(ended_at, window.started_at),
        inspected=window.inspected,
        rejected=window.rejected,
        confirmed_defects=window.confirmed_defects,
        false_rejects=window.false_rejects,
        escapes_found=window.escapes_found,
        score_histogram=tuple(window.score_histogram),
        input_brightness_histogram=tuple(window.input_brightness_histogram),
        counters=dict(window.counters),
    )
