"""Formatting helpers shared by the report's HTML sections: escaping, numbers, tables, images."""

import html
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["e", "img", "kv_table", "num", "pct", "png_uri"]


def e(value: Any) -> str:
    """Escape any value for HTML text or attribute context."""
    return html.escape(str(value), quote=True)


def pct(value: Any, missing: str = "not computed") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{float(value) * 100:.2f} %"


def num(value: Any, missing: str = "—") -> str:
    if value is None:
        return missing
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return str(value)


def _value_html(value: Any) -> str:
    """Render a JSON-able value for a key/value table (nested mappings become nested tables)."""
    if isinstance(value, Mapping):
        return kv_table(value)
    if isinstance(value, list | tuple):
        if all(not isinstance(v, Mapping | list | tuple) for v in value):
            return e(", ".join(num(v) for v in value))
        return f"<code>{e(json.dumps(value, default=str))}</code>"
    return e(num(value))


def kv_table(data: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{e(k)}</th><td>{_value_html(v)}</td></tr>" for k, v in data.items())
    return f"<table>{rows}</table>"


def img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{e(alt)}">'



def png_uri(png: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
