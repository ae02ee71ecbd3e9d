"""Evaluate compiled rules over a DuckDB relation in one pass, pandera-style results out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import duckdb
import pandera.pandas as pa

from .compile import Rule, compile_schema
from .report import RuleFailure, ValidationReport
from ..core.sql import quote_ident, sql_literal

ROW = "__row"  # the row's place or key (staged file row number; iSpot: event_id), shown as pandera's `index`
CARRIED = "__"  # columns named so travel with the rows (the row number, a sort key) and are not validated

_TYPE_FAMILIES = {
    "str": ("VARCHAR",),
    "string": ("VARCHAR",),
    "bool": ("BOOLEAN",),
    "boolean": ("BOOLEAN",),
    "int": ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"),
    "float": ("FLOAT", "DOUBLE", "DECIMAL"),
    "datetime": ("TIMESTAMP",),
    "date": ("DATE",),
}


def _family(dtype) -> str | None:
    text = str(dtype).lower()
    if text == "object":  # pandas object columns hold anything: lists and structs of JSON records too
        return None
    for key in ("datetime", "date", "bool", "float", "int", "str"):
        if text.startswith(key) or (key == "str" and text == "string"):
            return key
    return None


def _structure_failures(schema: pa.DataFrameSchema, columns: dict[str, str], non_null) -> list[RuleFailure]:
    out = []
    names = list(columns)
    for name, column in schema.columns.items():
        if name not in columns:
            if column.required:
                out.append(RuleFailure(check="column_in_dataframe", column=None, count=1, samples=[{"failure_case": name}],
                                       schema_context="DataFrameSchema"))
            continue
        family = _family(column.dtype) if column.dtype is not None else None
        # an all-NULL column carries no type information (pandera accepts it too)
        if family and columns[name].split("(")[0] not in _TYPE_FAMILIES.get(family, ()) and non_null(name):
            out.append(RuleFailure(check=f"dtype('{column.dtype}')", column=name, count=1,
                                   samples=[{"failure_case": columns[name]}]))
    if schema.strict:
        for name in names:
            if name not in schema.columns:
                out.append(RuleFailure(check="column_in_schema", column=None, count=1, samples=[{"failure_case": name}],
                                       schema_context="DataFrameSchema"))
    if schema.ordered:
        expected = [c for c in schema.columns if c in columns]
        actual = [c for c in names if c in schema.columns]
        if expected != actual:
            out.append(RuleFailure(check="column_ordered", column=None, count=1,
                                   samples=[{"failure_case": ",".join(actual), "expected": ",".join(expected)}],
                                   schema_context="DataFrameSchema"))
    return out


def validate_relation(con: duckdb.DuckDBPyConnection, relation_sql: str, schema: pa.DataFrameSchema | type, *,
                      sample: int = 5, redact: bool = False, name: str | None = None,
                      measures: dict[str, str] | Callable[[list[str]], dict[str, str]] | None = None
                      ) -> ValidationReport:
    """Validate the rows of `relation_sql` (a SELECT, or a table/view name) against `schema`.

    The relation may carry a `__row` column (row number in the file); it is used as pandera's
    `index` in samples and is not part of the schema, nor is any other column named `__...`.
    `measures` (name -> aggregate SQL over the relation, or a function of the validated column
    names giving them) are taken in the same pass as the row rules and returned as
    `report.measures`: what the later steps need to know of the checked rows.
    """
    started = time.monotonic()
    if isinstance(schema, type):
        schema = schema.to_schema()
    rel = relation_sql if relation_sql.strip().lower().startswith(("select", "with", "from")) else f"SELECT * FROM {relation_sql}"
    described = con.execute(f"DESCRIBE {rel}").fetchall()
    columns = {row[0]: row[1] for row in described if not row[0].startswith(CARRIED)}
    has_row = any(row[0] == ROW for row in described)
    def non_null(column: str) -> bool:
        return con.execute(f"SELECT count({quote_ident(column)}) FROM ({rel})").fetchone()[0] > 0

    failures = _structure_failures(schema, columns, non_null)
    rules = [r for r in compile_schema(schema)
             if (r.column is None or r.column in columns) and all(c in columns for c in r.columns)
             and _columns_in_sql_present(r, schema, columns)]
    row_rules = [r for r in rules if r.kind == "row"]
    measures = (measures(list(columns)) if callable(measures) else measures) or {}
    selects = (["count(*)"] + [f"count_if(NOT coalesce({r.sql}, FALSE))" for r in row_rules]
               + list(measures.values()))
    values = con.execute(f"SELECT {', '.join(selects)} FROM ({rel})").fetchall()[0]
    counts, measured = values[: 1 + len(row_rules)], dict(zip(measures, values[1 + len(row_rules):]))
    total = int(counts[0])
    index = ROW if has_row else "NULL"
    for rule, count in zip(row_rules, counts[1:]):
        if count:
            show = [rule.column] if rule.column else [c for c in schema.columns if c in columns]
            cols = ", ".join(quote_ident(c) for c in show)
            rows = con.execute(
                f"SELECT {index} AS __index, {cols} FROM ({rel}) WHERE NOT coalesce({rule.sql}, FALSE) "
                f"ORDER BY __index LIMIT {int(sample)}"
            ).fetchall()
            samples = [_sample(show, r, rule.column, redact) for r in rows]
            failures.append(RuleFailure(check=rule.check, column=rule.column, count=int(count), samples=samples,
                                        schema_context=rule.schema_context))
    for rule in (r for r in rules if r.kind == "unique"):
        key = ", ".join(quote_ident(c) for c in rule.columns)
        # pandera's field uniqueness ignores nulls; multi-column uniqueness compares them as values
        where = f"WHERE {quote_ident(rule.columns[0])} IS NOT NULL" if rule.column else ""
        dup = con.execute(
            f"SELECT count(*), coalesce(sum(n), 0) FROM (SELECT {key}, count(*) AS n FROM ({rel}) {where} "
            f"GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()
        if dup[0]:
            match = " AND ".join(f"t.{quote_ident(c)} IS NOT DISTINCT FROM d.{quote_ident(c)}" for c in rule.columns)
            rows = con.execute(
                f"SELECT {('t.' + ROW) if has_row else 'NULL'} AS __index, {', '.join('t.' + quote_ident(c) for c in rule.columns)} "
                f"FROM ({rel}) t JOIN (SELECT {key} FROM ({rel}) {where} GROUP BY ALL HAVING count(*) > 1 "
                f"ORDER BY ALL LIMIT {int(sample)}) d ON {match} ORDER BY 2, 1 LIMIT {int(sample) * 2}"
            ).fetchall()
            samples = [_sample(list(rule.columns), r, rule.column, redact) for r in rows]
            failures.append(RuleFailure(check=rule.check, column=rule.column, count=int(dup[1]), samples=samples,
                                        schema_context=rule.schema_context))
    return ValidationReport(
        schema_name=name or schema.name or "schema", rows=total, rules_checked=len(rules) + len(columns),
        failures=failures, seconds=time.monotonic() - started, measures=measured,
    )


def _columns_in_sql_present(rule: Rule, schema, columns: dict) -> bool:
    # dataframe rules name their columns in their statistics; skip them if a column is absent
    # (the missing column is already reported as column_in_dataframe).
    if rule.column is not None or rule.kind != "row":
        return True
    return all(quote_ident(c) not in rule.sql or c in columns for c in schema.columns)


def _sample(names: list[str], row: tuple, column: str | None, redact: bool) -> dict:
    values = dict(zip(names, row[1:]))
    if redact:
        values = {k: _redact(v) for k, v in values.items()}
    sample = {"index": row[0]}
    if column is not None:
        sample["failure_case"] = values.get(column)
    sample.update(values)
    return sample


def _redact(value) -> str | None:
    if value is None:
        return None
    text = str(value)
    return f"<redacted {len(text)} chars>"


def validate_parquet(path: Path | str, schema: pa.DataFrameSchema | type, *, sample: int = 5, redact: bool = False,
                     con: duckdb.DuckDBPyConnection | None = None, name: str | None = None,
                     measures=None) -> ValidationReport:
    """Validate a staged Parquet file (or glob) in one DuckDB pass."""
    own = con is None
    con = con or duckdb.connect()
    try:
        rel = f"SELECT * EXCLUDE (file_row_number), file_row_number AS {ROW} FROM read_parquet({sql_literal(str(path))}, file_row_number = true)"
        return validate_relation(con, rel, schema, sample=sample, redact=redact, name=name, measures=measures)
    finally:
        if own:
            con.close()
