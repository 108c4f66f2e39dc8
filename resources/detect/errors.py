"""Errors and quarantine records for detection labels.

Two kinds of failure, treated differently on purpose:

* a **whole-file** problem (an empty or unparseable COCO JSON, a ``data.yaml`` without ``names``) means
  nothing in the dataset can be trusted, so readers raise :class:`LabelFileError`;
* an **item** problem (one YOLO line, one COCO annotation, one VOC file) concerns one image, so readers
  record a :class:`Problem` and go on: a labelling team fixes a dataset in one pass only when it sees
  every bad item at once, and the good images can train while the bad ones wait in quarantine.

A :class:`Problem` turns into a raisable :class:`LabelItemError` (``problem.to_error()``) for callers
that want strict reading; :func:`raise_for_problems` does that for a whole list.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from resources.errors import MfgVisionError

__all__ = [
    "BoxSetError",
    "DetectLabelError",
    "LabelFileError",
    "LabelItemError",
    "Problem",
    "raise_for_problems",
]

# How many problems a summary message lists before "and N more".
_MAX_EXAMPLES = 3


class DetectLabelError(MfgVisionError, ValueError):
    """Base of every detection-label error; a ``ValueError`` too, so plain ``except ValueError`` works."""


class LabelFileError(DetectLabelError):
    """A whole annotation file (or the class-names file) cannot be used; the message names the file,
    what is wrong and how to fix it."""


class LabelItemError(DetectLabelError):
    """One label item (a line, an annotation id, one VOC file) is wrong; carries its :class:`Problem`."""

    def __init__(self, message: str, problems: Sequence["Problem"] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[Problem, ...] = tuple(problems)


class BoxSetError(DetectLabelError):
    """An in-memory box set is inconsistent (a box for an unlisted image, a class without an id, a
    non-finite coordinate): a programming or table error, raised where the set is built or written."""


@dataclass(frozen=True)
class Problem:
    """One quarantined label item, as a record a quarantine table can store.

    ``file`` is the annotation file (as given to the reader), ``item`` says where in it (``line 4``,
    ``annotation id 17``, ``image id 3``, ``object 2``), ``reason`` what is wrong and ``fix`` what to do.
    ``image`` is the image the item belongs to, when known: readers set the whole image aside (not only
    the bad box), because training on an image whose defect box was dropped teaches the model that the
    defect is a good part.
    """

    file: str
    item: str
    reason: str
    fix: str
    image: str | None = None

    @property
    def message(self) -> str:
        """One line: where, what, and what to do."""
        where = f"{self.file} {self.item}" if self.item else self.file
        about = f" (image {self.image})" if self.image else ""
        return f"{where}{about}: {self.reason}; {self.fix}"

    def as_record(self) -> dict[str, str | None]:
        """A flat row for a quarantine table."""
        return {"file": self.file, "item": self.item, "image": self.image, "reason": self.reason, "fix": self.fix}

    def to_error(self) -> LabelItemError:
        """This problem as an exception, for strict callers."""
        return LabelItemError(self.message, [self])


def raise_for_problems(problems: Sequence[Problem]) -> None:
    """Raise one :class:`LabelItemError` listing the first problems (all of them on ``.problems``);
    do nothing when the list is empty. For callers that refuse a partly bad dataset."""
    if not problems:
        return
    shown = "\n  ".join(p.message for p in problems[:_MAX_EXAMPLES])
    rest = len(problems) - _MAX_EXAMPLES
    more = f"\n  and {rest} more" if rest > 0 else ""
    raise LabelItemError(
        f"{len(problems)} label item(s) are wrong:\n  {shown}{more}\n"
        "fix them in the labelling tool and export again, or read without strict mode to quarantine them",
        problems,
    )
