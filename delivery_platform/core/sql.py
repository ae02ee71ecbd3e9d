"""SQL text built in Python: one home for quoting values and names for DuckDB."""

from __future__ import annotations


def sql_literal(value) -> str:
    """A Python value as a SQL literal (strings quoted with '' doubling, None as NULL)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A column or table name as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
