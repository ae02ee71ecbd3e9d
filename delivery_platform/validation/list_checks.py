"""Checks on list columns (JSON-lines records: Lotame's segments and ips), in pandas and SQL.

Registered like the checks in sql_checks.py; an empty or NULL list passes the per-item rules
(say "non-empty" with `list_not_empty`).
"""

from __future__ import annotations

import re

import pandas as pd

from ..core.sql import sql_literal
from .sql_checks import register


def _items(value) -> list:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    return list(value)


def _field(item, field):
    return item if field is None else (item.get(field) if isinstance(item, dict) else item[field])


@register("list_not_empty", lambda col: f"len({col}) > 0")
def list_not_empty(series: pd.Series) -> pd.Series:
    return series.map(lambda v: len(_items(v)) > 0).astype(bool)


def _item_sql(field):
    return "x" if field is None else f"x.{field}"


@register("list_items_match", lambda col, field, pattern: (
    f"coalesce(list_bool_and(list_transform({col}, lambda x: coalesce(regexp_full_match(CAST({_item_sql(field)} AS VARCHAR), "
    f"{sql_literal(pattern)}), FALSE))), TRUE)"), ["field", "pattern"])
def list_items_match(series: pd.Series, field, pattern) -> pd.Series:
    """Every item (or its `field`) matches `pattern` in full."""
    rx = re.compile(pattern)
    return series.map(lambda v: all(_field(i, field) is not None and rx.fullmatch(str(_field(i, field)))
                                    for i in _items(v))).astype(bool)


@register("list_items_between", lambda col, field, min_value, max_value: (
    f"coalesce(list_bool_and(list_transform({col}, lambda x: {_item_sql(field)} IS NULL OR "
    f"({_item_sql(field)} >= {sql_literal(min_value)} AND {_item_sql(field)} <= {sql_literal(max_value)}))), TRUE)"),
    ["field", "min_value", "max_value"])
def list_items_between(series: pd.Series, field, min_value, max_value) -> pd.Series:
    """Every item's `field` is absent or within [min_value, max_value] (epoch seconds, counts)."""
    return series.map(lambda v: all(_field(i, field) is None or min_value <= _field(i, field) <= max_value
                                    for i in _items(v))).astype(bool)


@register("list_items_unique", lambda col, field: (
    f"len(list_distinct(list_transform({col}, lambda x: {_item_sql(field)}))) = len({col})"), ["field"])
def list_items_unique(series: pd.Series, field) -> pd.Series:
    def unique(v):
        names = [_field(i, field) for i in _items(v)]
        return len(set(names)) == len(names)
    return series.map(unique).astype(bool)


@register("any_list_not_empty", lambda columns: (
    "(" + " OR ".join(f"coalesce(len(\"{c}\"), 0) > 0" for c in columns) + ")"), ["columns"], dataframe=True)
def any_list_not_empty(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """At least one of the list columns holds an item (a record that says something)."""
    out = pd.Series(False, index=df.index)
    for c in columns:
        out = out | df[c].map(lambda v: len(_items(v)) > 0)
    return out.astype(bool)
