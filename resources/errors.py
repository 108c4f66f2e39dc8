"""The one exception root of the platform: what the ``mfgv`` CLI reports as a message, not a traceback.

Every error the platform raises on purpose (bad input, a refused model, a missing version) derives
from :class:`MfgVisionError`, usually together with the built-in class it always was (``ValueError``,
``LookupError``), so existing ``except ValueError`` callers keep working. The CLI catches this root,
``edge_sync``'s own root and pydantic's validation errors (a setting out of bounds); anything else
is a bug and keeps its traceback.
"""

__all__ = ["MfgVisionError"]


class MfgVisionError(Exception):
    """Base of every error the platform raises on purpose; the message says what is wrong and what to do."""
