"""Plain-text tables for the console (``mfgv models``): aligned columns, percentages, a header."""

from collections.abc import Sequence

from resources.registry import ModelVersion

__all__ = ["models_table", "text_table"]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, numbers right-aligned (cells that end in % or are digits)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for cell, width in zip(cells, widths):
            text = str(cell)
            numeric = text.endswith("%") or text.replace(".", "", 1).isdigit()
            out.append(text.rjust(width) if numeric else text.ljust(width))
        return "  ".join(out).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _pct(value: object) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f} %"


def models_table(versions: Sequence[ModelVersion]) -> str:
    """One row per registered version: status, task, test accuracy and decision rates, its dataset."""
    header = ("version", "status", "task", "test accuracy", "false rejects", "escapes", "dataset", "registered (UTC)")
    rows = [
        (
            v.version,
            v.status.value,
            v.task,
            _pct(v.metrics.get("test_accuracy")),
            _pct(v.metrics.get("test_false_reject_rate")),
            _pct(v.metrics.get("test_escape_rate")),
            str(v.dataset_version).removeprefix("dataset:")[:12],
            str(v.registered_at)[:16].replace("T", " "),
        )
        for v in versions
    ]
    return text_table(header, rows)
