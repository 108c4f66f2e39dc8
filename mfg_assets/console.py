"""How ``mfgv`` logs to the console: the platform's own messages, not the libraries'.

An onboard once printed 434 lines, three quarters of them library chatter (great_expectations
registering functions, onnx_ir replacing initializers, alembic, Dagster's beta warnings). By
default only the platform's loggers speak at INFO; a library's record shows only at ERROR, and
Python warnings are hidden. ``-v`` shows everything at DEBUG. Dagster's event log keeps every
record of a run either way.
"""

import logging
import warnings

__all__ = ["OWN_LOGGERS", "configure_console_logging"]

OWN_LOGGERS = ("mfgv", "mfg_assets", "resources", "edge_sync", "sensors")


class _OwnOrSerious(logging.Filter):
    """Pass the platform's records at INFO and above, anyone else's at ERROR and above."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".", 1)[0] in OWN_LOGGERS
        return record.levelno >= (logging.INFO if own else logging.ERROR)


def configure_console_logging(verbose: bool) -> None:
    """Set up the root logger for one ``mfgv`` command (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if verbose:
        root.setLevel(logging.DEBUG)
        warnings.resetwarnings()
    else:
        root.setLevel(logging.INFO)
        handler.addFilter(_OwnOrSerious())
        warnings.filterwarnings("ignore")  # deprecation and beta notices of libraries: -v shows them
    root.addHandler(handler)
