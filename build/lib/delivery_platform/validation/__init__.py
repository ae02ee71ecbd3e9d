"""Spec validation: pandera models are the spec; DuckDB evaluates them at warehouse speed.

- `sql_checks` registers the project's own pandera check methods together with their DuckDB
  form, so a vendor model can use them like any built-in check.
- `compile` turns a pandera schema into SQL rules; `run` evaluates them all in one pass over a
  staged Parquet file and returns a report shaped like pandera's `failure_cases`.
- `report` turns that into Dagster check results (rule, failure count, sample rows).
"""

from .compile import Rule, compile_schema
from .report import ValidationReport, check_result, validate_frame_with_pandera
from .run import validate_relation, validate_parquet

__all__ = [
    "Rule",
    "ValidationReport",
    "check_result",
    "compile_schema",
    "validate_frame_with_pandera",
    "validate_parquet",
    "validate_relation",
]
