"""Compile a pandera schema into DuckDB SQL rules.

Every check a model uses must have a SQL form here (built-in) or in `sql_checks` (ours);
compiling fails on anything else, so a model can never carry a rule that is silently not
enforced. Null handling follows pandera: a check ignores nulls (`ignore_na`), and
`nullable=False` is a rule of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import pandera.pandas as pa

from ..core.sql import quote_ident, sql_literal
from .sql_checks import DATAFRAME_CHECKS, SQL_TEMPLATES, re_for_duckdb


class UnsupportedCheck(Exception):
    pass


@dataclass(frozen=True)
class Rule:
    """One rule of a schema, as pandera names it, with the SQL that is TRUE for a valid row."""

    check: str  # pandera's check name, e.g. "str_matches('^TC-\\d+-\\d+$')" or "not_nullable"
    column: str | None  # None for dataframe-level rules
    kind: str  # "row" (a predicate per row) or "unique" (over `columns`)
    sql: str = ""
    columns: tuple[str, ...] = field(default_factory=tuple)
    schema_context: str = "Column"

    @property
    def label(self) -> str:
        return f"{self.column}: {self.check}" if self.column else self.check


def _builtin_sql(name: str, col: str, s: dict) -> str | None:
    lit = sql_literal
    if name == "str_matches":
        return f"regexp_matches({col}, {lit(re_for_duckdb(s['pattern']))})"
    if name == "str_contains":
        return f"regexp_matches({col}, {lit(s['pattern'])})"
    if name == "str_startswith":
        return f"starts_with({col}, {lit(s['string'])})"
    if name == "str_endswith":
        return f"ends_with({col}, {lit(s['string'])})"
    if name == "str_length":
        if s.get("exact_value") is not None:
            return f"length({col}) = {int(s['exact_value'])}"
        parts = []
        if s.get("min_value") is not None:
            parts.append(f"length({col}) >= {int(s['min_value'])}")
        if s.get("max_value") is not None:
            parts.append(f"length({col}) <= {int(s['max_value'])}")
        return " AND ".join(parts) or "TRUE"
    if name == "isin":
        return f"{col} IN ({', '.join(lit(v) for v in s['allowed_values'])})"
    if name == "notin":
        return f"{col} NOT IN ({', '.join(lit(v) for v in s['forbidden_values'])})"
    if name in ("equal_to", "eq"):
        return f"{col} = {lit(s['value'])}"
    if name in ("not_equal_to", "ne"):
        return f"{col} <> {lit(s['value'])}"
    if name in ("greater_than", "gt"):
        return f"{col} > {lit(s['min_value'])}"
    if name in ("greater_than_or_equal_to", "ge"):
        return f"{col} >= {lit(s['min_value'])}"
    if name in ("less_than", "lt"):
        return f"{col} < {lit(s['max_value'])}"
    if name in ("less_than_or_equal_to", "le"):
        return f"{col} <= {lit(s['max_value'])}"
    if name in ("in_range", "between"):
        lo = ">=" if s.get("include_min", True) else ">"
        hi = "<=" if s.get("include_max", True) else "<"
        return f"{col} {lo} {lit(s['min_value'])} AND {col} {hi} {lit(s['max_value'])}"
    return None


def _check_label(check: pa.Check) -> str:
    stats = check.statistics or {}
    if not stats:
        return check.name
    if len(stats) == 1:
        return f"{check.name}({next(iter(stats.values()))!r})"
    return f"{check.name}({', '.join(f'{k}={v!r}' for k, v in stats.items() if v is not None)})"


def _column_rule(column: str, check: pa.Check) -> Rule:
    col = quote_ident(column)
    stats = dict(check.statistics or {})
    sql = _builtin_sql(check.name, col, stats)
    if sql is None and check.name in SQL_TEMPLATES:
        sql = SQL_TEMPLATES[check.name](col, **stats)
    if sql is None:
        raise UnsupportedCheck(
            f"column {column!r}: check {check.name!r} has no DuckDB form; use a built-in check or register "
            "one in delivery_platform.validation.sql_checks"
        )
    if check.ignore_na:
        sql = f"({col} IS NULL OR ({sql}))"
    return Rule(check=_check_label(check), column=column, kind="row", sql=sql)


def compile_schema(schema: pa.DataFrameSchema | type) -> list[Rule]:
    """The rules of a pandera schema (or DataFrameModel class), in a stable order."""
    if isinstance(schema, type):
        schema = schema.to_schema()
    rules: list[Rule] = []
    for name, column in schema.columns.items():
        col = quote_ident(name)
        if not column.nullable:
            rules.append(Rule(check="not_nullable", column=name, kind="row", sql=f"{col} IS NOT NULL"))
        if column.unique:
            rules.append(Rule(check="field_uniqueness", column=name, kind="unique", columns=(name,)))
        for check in column.checks:
            rules.append(_column_rule(name, check))
    for check in schema.checks:
        if check.name not in DATAFRAME_CHECKS:
            raise UnsupportedCheck(f"dataframe check {check.name!r} has no DuckDB form")
        sql = SQL_TEMPLATES[check.name](**dict(check.statistics or {}))
        rules.append(Rule(check=_check_label(check), column=None, kind="row", sql=sql, schema_context="DataFrameSchema"))
    unique: Sequence[str] | None = schema.unique
    if unique:
        cols = (unique,) if isinstance(unique, str) else tuple(unique)
        rules.append(Rule(check="multiple_fields_uniqueness", column=None, kind="unique", columns=cols,
                          schema_context="DataFrameSchema"))
    return rules
