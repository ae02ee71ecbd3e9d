"""The SQL evaluation of a pandera model must agree with pandera itself, rule by rule."""

from __future__ import annotations

import duckdb
import pandas as pd
import pandera.pandas as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delivery_platform.validation import (check_result, compile_schema, validate_frame_with_pandera, 
                                          validate_parquet, validate_relation)
from delivery_platform.validation.compile import UnsupportedCheck


class Sample(pa.DataFrameModel):
    ip: str = pa.Field(is_ipv4=(), nullable=False)
    siteid: str = pa.Field(str_matches=r"^TC-\d+-\d+$", isin=["TC-1-1", "TC-1-2"])
    app: str = pa.Field(isin=["app", "web"])
    key: str = pa.Field(unique=True, str_length={"min_value": 1, "max_value": 4})
    ad_id: str = pa.Field(is_uuid=(), nullable=True)
    digest: str = pa.Field(is_hex_digest={"length": 4, "case": "upper"}, nullable=True)
    note: str = pa.Field(not_email_or_phone=(), no_formula_prefix=(), nullable=True)
    word: str = pa.Field(is_ascii=(), no_formula_prefix=(), nullable=True)

    class Config:
        strict = True
        ordered = True
        at_least_one_present = {"columns": ["ad_id", "digest"]}


VALUES = {
    "ip": ["1.2.3.4", "255.255.255.255", "256.1.1.1", "::1", "01.2.3.4", "1.2.3", None],
    "siteid": ["TC-1-1", "TC-1-2", "TC-1-3", "tc-1-1", "x", None],
    "app": ["app", "web", "Web", "", None],
    "key": ["a", "b", "c", "abcde", "", None],
    "ad_id": ["123e4567-e89b-12d3-a456-426614174000", "123E4567-E89B-12D3-A456-426614174000", "nope", None],
    "digest": ["ABCD", "abcd", "ABC", "ABCDE", None],
    "note": ["fine", "john@example.com", "+31 6 1234 5678", "=cmd|' /C calc'!A0", "-1", None],
    "word": ["ok", "", "é", "e\u0301", "日本", "😀", "\tx", "\rx", "@x", "+x", "x=", " -x", "\x7f", "\x80x", None],
}


def _by_rule(report) -> dict:
    return {(f.column, f.check.split("(")[0]): f.count for f in report.failures}


def _sql_report(df: pd.DataFrame):
    con = duckdb.connect()
    con.register("frame", df)
    return validate_relation(con, "SELECT *, (row_number() OVER () - 1)::BIGINT AS __row FROM frame", Sample)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({k: st.sampled_from(v) for k, v in VALUES.items()}), min_size=1, max_size=12))
def test_sql_rules_agree_with_pandera(rows):
    df = pd.DataFrame(rows, columns=list(VALUES)).astype("object")
    assert _by_rule(_sql_report(df)) == _by_rule(validate_frame_with_pandera(df, Sample))


def test_failures_name_rule_column_count_and_sample_rows(tmp_path):
    df = pd.DataFrame({  # noqa: F841 (read by name in the COPY below: DuckDB replacement scan)
        "ip": ["1.2.3.4", "::1"], "siteid": ["TC-1-1", "TC-9-9"], "app": ["web", "app"], "key": ["a", "a"],
        "ad_id": [None, None], "digest": ["ABCD", None], "note": ["ok", "ok"], "word": ["ok", None],
    })
    path = tmp_path / "rows.parquet"
    duckdb.connect().execute(f"COPY (SELECT * FROM df) TO '{path}' (FORMAT parquet)")
    report = validate_parquet(path, Sample)
    assert not report.passed
    failures = _by_rule(report)
    assert failures[("ip", "is_ipv4")] == 1
    assert failures[("siteid", "isin")] == 1
    assert failures[("key", "field_uniqueness")] == 2
    assert failures[(None, "at_least_one_present")] == 1
    ip = next(f for f in report.failures if f.column == "ip")
    assert ip.samples[0]["index"] == 1 and ip.samples[0]["failure_case"] == "::1"
    result = check_result(report)
    assert result.passed is False
    assert "::1" in result.metadata["failures"].value and result.metadata["failure_count"].value == 5
    cases = report.failure_cases()
    assert list(cases.columns) == ["schema_context", "column", "check", "check_number", "failure_case", "index"]


def test_structure_rules_missing_extra_and_misordered_columns():
    con = duckdb.connect()
    report = validate_relation(con, "SELECT 'TC-1-1' AS siteid, '1.2.3.4' AS ip, 'web' AS app, 'k' AS key, "
                                    "'x' AS extra", Sample)
    checks = {f.check for f in report.failures}
    assert {"column_in_dataframe", "column_in_schema", "column_ordered"} <= checks


def test_redacted_samples_never_show_the_value():
    con = duckdb.connect()
    report = validate_relation(con, "SELECT '1.2.3.4' AS ip, 'TC-1-1' AS siteid, 'web' AS app, 'k' AS key, "
                                    "NULL AS ad_id, 'ABCD' AS digest, 'john@example.com' AS note, 0 AS __row",
                               Sample, redact=True)
    text = report.error_text()
    assert "note" in text and "john@example.com" not in text


def test_a_check_without_sql_form_is_refused_at_compile_time():
    class Custom(pa.DataFrameModel):
        a: str = pa.Field()

        @pa.check("a")
        def odd(cls, s):  # noqa: N805
            return s.str.len() % 2 == 1

    with pytest.raises(UnsupportedCheck, match="no DuckDB form"):
        compile_schema(Custom)
