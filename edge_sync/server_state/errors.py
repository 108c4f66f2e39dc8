"""Why the sync server's state refuses a request: one exception per HTTP answer it maps to.

They live apart from the stores so that :mod:`edge_sync.server` can map each class to a status code
without reaching into a store, and so that every store raises the same classes. :class:`SyncError`
subclasses :class:`edge_sync.errors.EdgeSyncError`, the one exception root of ``edge_sync``.
"""

from edge_sync.errors import EdgeSyncError

__all__ = [
    "CorruptState",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "PackageMismatch",
    "SyncError",
    "TooLarge",
    "UnknownDevice",
]


class SyncError(EdgeSyncError):
    """Base class of every failure the sync server's state reports."""


class UnknownDevice(SyncError):
    """No registered device holds this token, or the device id is not registered (HTTP 401)."""


class Forbidden(SyncError):
    """The device is known but asks for something that is not its own (HTTP 403)."""


class NotFound(SyncError):
    """The requested package file does not exist in a version the device may read (HTTP 404)."""


class PackageMismatch(SyncError):
    """A package folder's files do not match the manifest (missing, other sha256 or size), or a model
    version was already published with other bytes; nothing was made servable."""


class InvalidInput(SyncError, ValueError):
    """A name, manifest or metric window is not acceptable to the server (HTTP 422)."""


class TooLarge(SyncError):
    """An upload is over the server's size limit (HTTP 413)."""


class CorruptState(SyncError):
    """A file of the state folder cannot be read back; an operator must inspect it."""
