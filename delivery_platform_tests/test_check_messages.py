"""A failing check says what to do next; its sample rows are a table; descriptions cite the repo's docs."""

from __future__ import annotations

import datetime as dt
import re

import dagster as dg
import duckdb
import pandas as pd
import pandera.pandas as pa

from delivery_platform.definitions import build_defs
from delivery_platform.readiness import readiness
from delivery_platform.settings import PROJECT_ROOT
from delivery_platform.validation import check_result, validate_parquet
from delivery_platform.validation.report import SPEC_REMEDY, md_table
from delivery_platform.vendors.digital_audience import optouts
from delivery_platform.vendors.ispot.assets import hold_message
from delivery_platform.vendors.lotame.assets import consistency_result


class Rows(pa.DataFrameModel):
    siteid: str = pa.Field(str_matches=r"^TC-\d+-\d+$")
    note: str = pa.Field(isin=["ok"])


def failing_report(tmp_path):
    df = pd.DataFrame({"siteid": ["TC-1-1", "TC-<account>-<site>"], "note": ["ok", "a|b"]})  # noqa: F841
    path = tmp_path / "rows.parquet"
    duckdb.connect().execute(f"COPY (SELECT * FROM df) TO '{path}' (FORMAT parquet)")
    return validate_parquet(path, Rows)


def tables(markdown: str) -> list[list[list[str]]]:
    """The Markdown tables in a text, as rows of cells (header first, separator dropped)."""
    found, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|") and line.endswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])]
            if not all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
                current.append(cells)
            else:
                assert len(current) == 1, "a separator row must follow exactly one header row"
        elif current:
            found.append(current)
            current = []
    return found


def test_a_failed_spec_check_ends_with_the_next_step(tmp_path):
    result = check_result(failing_report(tmp_path))
    assert not result.passed
    assert result.description.endswith(SPEC_REMEDY) and "Next step:" in result.description
    custom = check_result(failing_report(tmp_path), next_step="Next step: ask the vendor.")
    assert custom.description.endswith("Next step: ask the vendor.")


def test_a_passing_check_states_only_the_fact(tmp_path):
    path = tmp_path / "ok.parquet"
    duckdb.connect().execute(f"COPY (SELECT 'TC-1-2' AS siteid, 'ok' AS note) TO '{path}' (FORMAT parquet)")
    result = check_result(validate_parquet(path, Rows))
    assert result.passed and "Next step" not in result.description


def test_sample_rows_render_as_markdown_tables(tmp_path):
    markdown = check_result(failing_report(tmp_path)).metadata["failures"].value
    found = tables(markdown)
    rules, samples = found[0], found[1:]
    assert rules[0] == ["rule", "column", "failures"] and len(rules) == 3  # header + two failed rules
    assert len(samples) == 2  # one table of sample rows per failed rule
    siteid = next(t for t in samples if any("TC-" in c for row in t for c in row))
    assert siteid[0][:2] == ["index", "failure_case"] and len(siteid) == 2  # header + the one failing row
    # angle brackets are entities (the UI would eat `<account>` as HTML), pipes are escaped
    assert siteid[1][:2] == ["1", "TC-&lt;account&gt;-&lt;site&gt;"]
    note = next(t for t in samples if t is not siteid)
    assert note[1][:2] == ["1", "a\\|b"]


def test_md_table_uses_every_key_as_a_column():
    text = md_table([{"a": 1, "b": "x\ny"}, {"c": None, "a": 2}])
    assert text.splitlines() == ["| a | b | c |", "|---|---|---|", "| 1 | x y |  |", "| 2 |  |  |"]


def test_minimum_size_says_what_ispot_answers_and_who_to_ask():
    text = hold_message("2026-11-19", 1_000, 50_000, 8_000_000, held=True)
    assert "400 'The file is too small" in text and "iSpot Customer Success" in text
    assert text.endswith("set ISPOT_MIN_UPLOAD_BYTES and re-run the partition.")


def test_lotame_replay_mismatch_ends_with_what_to_do():
    result = consistency_result({"held": 10, "missing": 2, "extra": 1, "missing_samples": ["u1"],
                                 "extra_samples": ["u9"]}, files=3, first="2026-11-01")
    assert not result.passed and "Next step:" in result.description
    assert result.description.endswith("re-run or drop that day, then re-run this one")


def test_opt_outs_without_a_location_say_whom_to_tell():
    text = optouts.report(3, "2026-11-18", None, None)
    assert text.endswith(f"tell dA about these opt-outs through the agreed channel, or set "
                         f"{optouts.DESTINATION_VAR} so the next run sends them")


def test_readiness_hold_ends_with_when_to_run_again():
    ok, why, _ = readiness(duckdb.connect(), [], "2026-11-21", dt.datetime(2026, 11, 21, 9, tzinfo=dt.timezone.utc))
    assert not ok and why.endswith("Run it again once the day is over (the schedule does).")


def test_descriptions_cite_docs_in_the_repo_not_vendor_files_outside_it():
    defs = build_defs("local")
    graph = defs.resolve_asset_graph()
    texts = {key.to_user_string(): defs.resolve_assets_def(key).specs_by_key[key].description or ""
             for key in graph.get_all_asset_keys() if graph.get(key).is_materializable}
    for check_key in graph.asset_check_keys:
        texts[f"{check_key.asset_key.to_user_string()}:{check_key.name}"] = (
            graph.get_check_spec(check_key).description or "")
    outside = {k: t for k, t in texts.items() if re.search(r"[\w-]+\.txt\b|DIGEST", t)}
    assert not outside, outside
    cited = {m for t in texts.values() for m in re.findall(r"docs/[\w-]+\.md", t)}
    assert {f"docs/{v}.md" for v in ("ispot", "lotame", "optimove", "digital_audience", "idomoo")} <= cited
    assert all((PROJECT_ROOT / path).exists() for path in cited), cited
    assert isinstance(defs, dg.Definitions)
