"""A pandera check in words, as the README spec tables and the UI's column schemas show it."""

from __future__ import annotations

import pandera.pandas as pa


def _stat(value) -> str:
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        shown = ", ".join(f"`{v}`" for v in items[:8])
        return shown + (f" … ({len(items)} values)" if len(items) > 8 else "")
    return f"`{value}`"


def check_text(check: pa.Check) -> str:
    stats = {k: v for k, v in (check.statistics or {}).items() if v is not None}
    if not stats:
        return check.name or "custom"
    if len(stats) == 1:
        return f"{check.name} {_stat(next(iter(stats.values())))}"
    return f"{check.name} (" + ", ".join(f"{k}={_stat(v)}" for k, v in stats.items()) + ")"
