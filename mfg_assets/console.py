"""How ``mfgv`` logs to the console: the platform's own messages, not the libraries'.

An onboard once printed 434 lines, three quarters of them library chatter (great_expectations
registering functions, onnx_ir replacing initializers, alembic, Dagster's beta warnings). By
default the command's own messages (``mfgv``) speak at INFO, the platform's modules at WARNING
(what a step does is on the progress line, ``mfg_assets.progress``), a library only at ERROR, and
Python warnings are hidden. ``-v`` shows everything at DEBUG. Dagster's event log keeps every
record of a run either way.
"""

import logging
import warnings
from collections.abc import Callable

__all__ = ["OWN_LOGGERS", "configure_console_logging", "interrupts_to_this_process_only"]

OWN_LOGGERS = ("mfgv", "mfg_assets", "resources", "edge_sync", "sensors")


class _OwnOrSerious(logging.Filter):
    """Pass the command's records at INFO, the platform's modules' at WARNING, anyone else's at ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        top = record.name.split(".", 1)[0]
        floor = logging.INFO if top == "mfgv" else logging.WARNING if top in OWN_LOGGERS else logging.ERROR
        return record.levelno >= floor


class _AboveTheProgressLine(logging.StreamHandler):
    """Writes each record above the live progress line (``tqdm.write``), never into it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def configure_console_logging(verbose: bool) -> None:
    """Set up the root logger for one ``mfgv`` command (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = _AboveTheProgressLine()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if verbose:
        root.setLevel(logging.DEBUG)
        warnings.resetwarnings()
    else:
        root.setLevel(logging.INFO)
        handler.addFilter(_OwnOrSerious())
        warnings.filterwarnings("ignore")  # deprecation and beta notices of libraries: -v shows them
    root.addHandler(handler)


def interrupts_to_this_process_only() -> Callable[[], None]:
    """Ctrl-C reaches this process alone, not the helpers Dagster starts beside a run.

    Dagster captures a step's output with a ``tail`` and a ``watch_orphans.py`` child in the
    terminal's process group; on Ctrl-C each printed its own KeyboardInterrupt traceback. Here SIGINT
    is blocked in every thread (children inherit the mask, so the signal stays pending for them) and
    one thread waits for it and hands it to the main thread as Python's own interrupt, so the run
    stops as it would have, and the command prints one line (``mfg_assets.cli``)."""
    import _thread
    import signal
    import threading

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def forward() -> None:
        while True:
            signal.sigwait({signal.SIGINT})
            _thread.interrupt_main(signal.SIGINT)

    threading.Thread(target=forward, name="mfgv-interrupt", daemon=True).start()

    def restore() -> None:
        """Deliver SIGINT to this thread again (the command is done; a caller such as a test goes on)."""
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    return restore
