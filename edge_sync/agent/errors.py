"""What can go wrong on a device, by failure mode; every one keeps the running model running."""

from edge_sync.errors import EdgeSyncError

__all__ = ["AgentError", "DownloadError", "DownloadInterrupted", "SelfTestFailed", "VerificationError"]


class AgentError(EdgeSyncError):
    """The agent cannot do what was asked; the message says what is kept running and what to do."""


class DownloadError(AgentError):
    """A package file could not be fetched or stored (disk full, file missing on the server)."""


class DownloadInterrupted(DownloadError):
    """The transfer broke off (server down, restarted, cut connection); what arrived is kept and the
    next sync resumes from it with a ``Range`` request."""


class VerificationError(AgentError):
    """A manifest or package file fails the device's checks (sha256, size, unsafe path, targeting)."""


class SelfTestFailed(AgentError):
    """The downloaded model cannot be loaded, or does not reproduce the platform's self-test numbers."""
