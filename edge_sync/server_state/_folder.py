"""What every store of the state folder shares: where it lies, its lock, the name rule, two helpers.

The stores are separate classes over one folder; this is the one place that says where its
temporary files go and which file is locked, so two stores cannot disagree about either (a store
that locked another file would not exclude the others' read-modify-write changes).
"""

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_sync.contract.names import NAME
from edge_sync.durable import locked
from edge_sync.server_state.errors import InvalidInput

__all__ = ["StateFolder", "check_name", "now", "some"]


@dataclass(frozen=True, slots=True)
class StateFolder:
    """The root of a state folder, with the temporary folder and the lock every store uses."""

    root: Path

    @property
    def tmp(self) -> Path:
        """Temporary files, on the same filesystem as everything else, for atomic renames and links."""
        return self.root / "tmp"

    def locked(self) -> AbstractContextManager[None]:
        """The exclusive ``flock`` on ``<root>/.lock`` that every read-modify-write change holds."""
        return locked(self.root / ".lock")


def check_name(kind: str, value: object) -> str:
    """``value`` if it is a valid line or device name (the contract's one rule), else :class:`InvalidInput`."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise InvalidInput(
            f"{kind} {value!r} is not a valid name: use 1 to 63 letters, digits, '_' or '-', starting with a "
            f"letter or digit ({NAME.pattern}; it becomes a folder name on the server)"
        )
    return value


def now() -> datetime:
    return datetime.now(UTC)


def some(mapping: dict[str, Any], limit: int = 10) -> str:
    """The first ``limit`` keys of ``mapping``, sorted, for an error message."""
    names = sorted(mapping)
    if not names:
        return "none"
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
