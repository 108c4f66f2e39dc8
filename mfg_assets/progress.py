"""What ``mfgv`` shows while a run works: one live progress line, not the event stream.

Dagster's console logger prints every event of a run, several hundred lines for one onboard, with
minutes of silence inside a step. This logger shows what a person follows instead: the step, what
it is doing now, the time spent and, where a step says how far it is ("epoch 3/12", "fold 2/5",
"trial 4/20"), an estimate of what is left. On a terminal it is one line rewritten in place
(tqdm); elsewhere (a log file, CI) one plain line per message. Warnings and errors are always
printed in full. Dagster's own event log keeps everything, whatever is shown here.
"""

import logging
import re
import sys
import time
from typing import TextIO

import dagster as dg

__all__ = ["PROGRESS_LOGGER", "ProgressLine", "progress_logger", "run_loggers"]

PROGRESS_LOGGER = "mfgv_progress"
_COUNT = re.compile(r"\b(?:epoch|fold|trial|batch)\s+(\d+)\s*/\s*(\d+)\b", re.IGNORECASE)
# recorded in the lineage tables, or said by the failure summary: not news to a person watching
_NOISE = ("lineage: ", "Dependencies for step ")
_OPEN = "[{elapsed}] {desc}"
_COUNTED = "[{elapsed}, {remaining} left] {n_fmt}/{total_fmt} {desc}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class ProgressLine(logging.Handler):
    """Turns a run's log records into progress output (see the module docstring).

    ``live``: rewrite one line in place (a terminal); else print plain lines. ``stream`` is where
    it writes (stderr by default, like the log it replaces)."""

    def __init__(self, live: bool | None = None, stream: TextIO | None = None) -> None:
        super().__init__(level=logging.DEBUG)
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.started = time.monotonic()
        self.step: str | None = None
        self.step_started = self.started
        self._bar = None

    # -- what a record says -------------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        try:
            meta = getattr(record, "dagster_meta", None) or {}
            event = meta.get("dagster_event")
            step = meta.get("step_key") or self.step
            message = str(meta.get("orig_message") or record.getMessage())
            if event is not None:
                kind = getattr(event, "event_type_value", "")
                if kind == "STEP_START":
                    self._start_step(step)
                elif kind == "STEP_SUCCESS":
                    self._finish_step(step, "done")
                elif kind == "STEP_FAILURE":
                    self._finish_step(step, "failed")
                return
            if message.startswith(_NOISE):
                return
            if record.levelno >= logging.WARNING:
                self._permanent(f"{logging.getLevelName(record.levelno).lower()}: {step or 'run'}: {message}")
            elif record.levelno >= logging.INFO:
                self._status(step, message)
        except Exception:  # a display problem must never fail the run
            self.handleError(record)

    # -- output ---------------------------------------------------------------------------------
    def _start_step(self, step: str | None) -> None:
        self._close_bar()
        self.step, self.step_started = step, time.monotonic()
        if self.live:
            from tqdm import tqdm

            self._bar = tqdm(total=None, file=self.stream, leave=False, bar_format=_OPEN)
            self._describe(step, "starting")
        else:
            self._print(f"[{_clock(time.monotonic() - self.started)}] {step}: started")

    def _finish_step(self, step: str | None, outcome: str) -> None:
        took = _clock(time.monotonic() - self.step_started)
        self._close_bar()
        self._print(f"[{_clock(time.monotonic() - self.started)}] {step}: {outcome} in {took}")
        self.step = None

    def _status(self, step: str | None, message: str) -> None:
        count = _COUNT.search(message)
        if not self.live:
            self._print(f"[{_clock(time.monotonic() - self.started)}] {step}: {message}")
            return
        if self._bar is None:
            self._start_step(step)
        if count:
            done, total = int(count.group(1)), int(count.group(2))
            self._bar.total = total
            self._bar.n = done
            self._bar.bar_format = _COUNTED
        self._describe(step, message)

    def _describe(self, step: str | None, message: str) -> None:
        """The live line's text, cut to the terminal's width so it never wraps (a wrapped line stays)."""
        import shutil

        room = max(20, shutil.get_terminal_size((100, 20)).columns - 32)
        text = f"{step or 'run'}: {message}"
        self._bar.set_description_str(text if len(text) <= room else text[: room - 1] + "…", refresh=True)

    def _permanent(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self._print(text)

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self._close_bar()
        super().close()


@dg.logger(
    config_schema={"live": dg.Field(bool, is_required=False, description="rewrite one line in place (default: on a terminal)")},
    description="mfgv's progress line: the step, what it is doing, elapsed time and an estimate of what is left",
)
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger(PROGRESS_LOGGER, level=logging.DEBUG)
    logger.addHandler(ProgressLine(live=init_context.logger_config.get("live")))
    return logger


def run_loggers(verbose: bool = False) -> dict:
    """The ``loggers`` section of an ``mfgv`` run's config: the progress line, plus Dagster's whole
    event stream on the console with ``-v``."""
    loggers: dict = {PROGRESS_LOGGER: {"config": {}}}
    if verbose:
        loggers["console"] = {"config": {"log_level": "DEBUG"}}
    return loggers
