"""The one exception root of ``edge_sync``: callers catch :class:`EdgeSyncError` and let bugs propagate.

Each side subclasses it by failure mode: :class:`~edge_sync.contract.ContractError` (a manifest or
window breaks the contract), ``edge_sync.agent.AgentError`` (the device cannot do what was asked)
and ``edge_sync.server_state.SyncError`` (the server's state refuses a request). A ``KeyError`` or
``TypeError`` escaping from the package is therefore a bug, never an expected condition.
"""

__all__ = ["EdgeSyncError"]


class EdgeSyncError(Exception):
    """Base of every error ``edge_sync`` raises on purpose; the message says what to do."""
