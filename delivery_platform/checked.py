"""What a partition's spec check saw, kept beside its staged rows for the steps after it.

The spec check makes one pass over the rows; in that pass it also takes what later steps would
otherwise read the rows again for: the row count, each column's null and distinct share (the drift
guard's profile), the first and last event time (the receipt) and a chain's own measures (iSpot:
the split's sizes and a fingerprint of the rows), and its verdict as judged (a chain's `judge_rows` may
fail rows that meet the model: Idomoo's row limits, dA's opt-outs), which the files step requires to be
a pass. Written as `checked.json` in the partition's staging folder (temp name, then rename); the rows
step removes it when it stages new rows, so a later step never reads what was seen of rows that are no
longer there.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path

from .core.files import write_atomic
from .core.sql import quote_ident

CHECKED = "checked.json"


def profile_measures(columns: list[str]) -> dict[str, str]:
    """The aggregates of the drift profile: each column's non-null and approximate distinct count."""
    out = {}
    for c in columns:
        out[f"present:{c}"] = f"count({quote_ident(c)})"
        out[f"distinct:{c}"] = f"approx_count_distinct({quote_ident(c)})"
    return out


def span_measures(column: str | None, columns: list[str]) -> dict[str, str]:
    if column is None or column not in columns:
        return {}
    return {"first_event": f"min({quote_ident(column)})", "last_event": f"max({quote_ident(column)})"}


def profile_of(rows: int, measured: dict) -> dict:
    """{rows, columns: {name: {null_share, distinct_share}}} from `profile_measures`' values."""
    columns = {}
    for name, present in measured.items():
        if not name.startswith("present:"):
            continue
        column = name.split(":", 1)[1]
        distinct = measured[f"distinct:{column}"]
        columns[column] = {
            "null_share": round(1 - present / rows, 4) if rows else 0.0,
            "distinct_share": round(min(distinct, present) / present, 4) if present else 0.0,
        }
    return {"rows": rows, "columns": columns}


def _plain(value):
    if isinstance(value, (dt.date, dt.datetime, decimal.Decimal)):
        return str(value)
    return value


def write_checked(stage_dir: Path, *, rows: int, passed: bool, measured: dict, event_column: str | None) -> None:
    """Record what the check saw."""
    doc = {
        "rows": rows,
        "passed": passed,
        "profile": profile_of(rows, measured),
        "event_span": {"first_event": _plain(measured.get("first_event")),
                       "last_event": _plain(measured.get("last_event")), "column": event_column}
        if "first_event" in measured else None,
        "measures": {k: _plain(v) for k, v in measured.items()
                     if not k.startswith(("present:", "distinct:")) and k not in ("first_event", "last_event")},
    }
    write_atomic(Path(stage_dir) / CHECKED, json.dumps(doc))


def read_checked(stage_dir: Path) -> dict | None:
    """The record of the partition's last spec check, or None when its rows were never checked."""
    path = Path(stage_dir) / CHECKED
    return json.loads(path.read_text()) if path.exists() else None


def forget_checked(stage_dir: Path) -> None:
    """New rows are being staged: what was seen of the old ones no longer holds."""
    (Path(stage_dir) / CHECKED).unlink(missing_ok=True)
