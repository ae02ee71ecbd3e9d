"""Validation results: pandera's `failure_cases` shape, and Dagster check results from them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors


@dataclass
class RuleFailure:
    check: str
    column: str | None
    count: int
    samples: list[dict] = field(default_factory=list)
    schema_context: str = "Column"

    @property
    def label(self) -> str:
        return f"{self.column}: {self.check}" if self.column else self.check


@dataclass
class ValidationReport:
    schema_name: str
    rows: int
    rules_checked: int
    failures: list[RuleFailure]
    seconds: float = 0.0
    measures: dict = field(default_factory=dict)  # the aggregates asked for beside the rules

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failure_count(self) -> int:
        return sum(f.count for f in self.failures)

    def failure_cases(self) -> pd.DataFrame:
        """Sampled failure cases with pandera's columns (schema_context, column, check, ...)."""
        rows = []
        for number, f in enumerate(self.failures):
            for s in f.samples or [{}]:
                rows.append({
                    "schema_context": f.schema_context, "column": f.column, "check": f.check,
                    "check_number": number, "failure_case": s.get("failure_case"), "index": s.get("index"),
                })
        return pd.DataFrame(rows, columns=["schema_context", "column", "check", "check_number", "failure_case", "index"])

    def summary(self) -> str:
        if self.passed:
            return f"{self.schema_name}: {self.rows:,} rows pass {self.rules_checked} rules"
        parts = "; ".join(f"{f.label} failed {f.count:,}x" for f in self.failures)
        return f"{self.schema_name}: {self.failure_count:,} failures in {self.rows:,} rows: {parts}"

    def error_text(self, context: str = "") -> str:
        """A multi-line message naming the file, rule, column and sample rows."""
        lines = [f"{context}{self.summary()}"]
        for f in self.failures:
            lines.append(f"  rule {f.check!r} on column {f.column!r}: {f.count:,} rows; samples:")
            for s in f.samples[:5]:
                lines.append("    " + json.dumps(s, default=str, ensure_ascii=False))
        return "\n".join(lines)


# What an operator does about a failed spec check when the caller names nothing more specific.
SPEC_REMEDY = ("Nothing was delivered. Next step: correct the rows shown (in the warehouse table or the load "
               "that fills it) or the setting the rule comes from, then launch the partition again.")

# ... and about a file check that read back something other than what was checked.
FILES_REMEDY = ("Nothing was delivered. Next step: materialize the `_files` asset of this partition again; if "
                "the check fails again, the file writer is at fault: report it with this run's id.")


def md_cell(value) -> str:
    """One Markdown table cell: pipes escaped, no line breaks, and no angle brackets for the UI to take as
    HTML (`TC-<account>-<site>` would show as "TC--")."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", " ").replace("\n", " "))


def md_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows as a Markdown table (every key of every row a column, in first-seen order)."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    if not columns:
        return ""
    out = ["| " + " | ".join(md_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        out.append("| " + " | ".join("" if row.get(c) is None else md_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(out)


def _markdown(report: ValidationReport, max_samples: int) -> str:
    """The failed rules as a table, then each rule's sample rows as a table of their own."""
    if report.passed:
        return f"All {report.rows:,} rows pass."
    out = ["| rule | column | failures |", "|---|---|---:|"]
    for f in report.failures:
        out.append(f"| `{md_cell(f.check)}` | {md_cell(f.column or '(row)')} | {f.count:,} |")
    for f in report.failures:
        if f.samples:
            out += ["", f"**`{md_cell(f.check)}` on {md_cell(f.column or 'the row')}**: sample rows", "",
                    md_table(f.samples[:max_samples])]
    return "\n".join(out)


def with_next_step(description: str, next_step: str) -> str:
    """A failing check's description: the facts, then what the operator should do."""
    return f"{description.rstrip().rstrip('.')}. {next_step.strip()}"


def check_result(report: ValidationReport, *, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
                 max_samples: int = 5, extra: dict | None = None, next_step: str | None = None,
                 **kwargs) -> dg.AssetCheckResult:
    """A Dagster check result that shows each failed rule, its count and sample rows; a failing one's
    description ends with the operator's next step (`next_step`, else `SPEC_REMEDY`)."""
    metadata = {
        "rows_checked": dg.MetadataValue.int(report.rows),
        "rules_checked": dg.MetadataValue.int(report.rules_checked),
        "failure_count": dg.MetadataValue.int(report.failure_count),
        "failed_rules": dg.MetadataValue.text(", ".join(f.label for f in report.failures) or "none"),
        "failures": dg.MetadataValue.md(_markdown(report, max_samples)),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
    }
    if report.failures:
        metadata["sample_rows"] = dg.MetadataValue.json(
            [{"rule": f.check, "column": f.column, "count": f.count,
              "samples": json.loads(json.dumps(f.samples[:max_samples], default=str))}
             for f in report.failures])
    metadata.update(extra or {})
    description = report.summary() if report.passed else with_next_step(report.summary(),
                                                                           next_step or SPEC_REMEDY)
    return dg.AssetCheckResult(passed=report.passed, severity=severity, metadata=metadata,
                               description=description, **kwargs)


def validate_frame_with_pandera(df: pd.DataFrame, schema: pa.DataFrameSchema | type, *, sample: int = 5) -> ValidationReport:
    """Validate a small frame with pandera itself (lazy), reported in the same shape.

    Used by tests to prove the SQL evaluation agrees with pandera, and where frames are small.
    """
    if isinstance(schema, type):
        schema = schema.to_schema()
    try:
        schema.validate(df, lazy=True)
        return ValidationReport(schema.name or "schema", len(df), 0, [])
    except SchemaErrors as err:
        cases = err.failure_cases
        failures = []
        for (context, column, check), group in cases.groupby(["schema_context", "column", "check"], dropna=False, sort=False):
            column = None if pd.isna(column) or context == "DataFrameSchema" and column == schema.name else column
            failures.append(RuleFailure(
                check=str(check), column=column, count=len(group), schema_context=str(context),
                samples=[{"index": i, "failure_case": v} for i, v in zip(group["index"].head(sample), group["failure_case"].head(sample))],
            ))
        # pandera reports a failing dataframe-wide check once per column of each failing row;
        # the platform counts it once per row, with no column, as the SQL evaluation does.
        frame_checks = {c.name for c in schema.checks}
        merged: dict[str, RuleFailure] = {}
        kept = []
        for failure in failures:
            name = failure.check.split("(")[0]
            if name in frame_checks and failure.column in schema.columns:
                rows = merged.setdefault(name, RuleFailure(check=failure.check, column=None, count=0,
                                                           schema_context="DataFrameSchema", samples=[]))
                seen = {s["index"] for s in rows.samples}
                rows.samples.extend(s for s in failure.samples if s["index"] not in seen)
                rows.count = max(rows.count, failure.count)
            else:
                kept.append(failure)
        failures = kept + list(merged.values())
        return ValidationReport(schema.name or "schema", len(df), 0, failures)
