"""What the UI shows is what happens: kinds from the configured destination, a code version per
vendor asset, column schemas from the pandera models, `dagster/row_count`, and descriptions whose
angle brackets survive the UI's Markdown."""

from __future__ import annotations

import re
import shutil

import dagster as dg
import pytest

from delivery_platform import presentation
from delivery_platform.core.markdown import outside_code, ui_text
from delivery_platform.definitions import build_defs
from delivery_platform.vendors import NAMES as VENDORS, VENDORS as REGISTRY
from delivery_platform.spec_docs import vendor_models

TAG = re.compile(r"<[A-Za-z/!]")


def specs(env="local"):
    return {s.key: s for s in build_defs(env).resolve_all_asset_specs()}


def _kinds(all_specs):
    return {k.to_user_string(): s.kinds for k, s in all_specs.items() if k.path[-1].endswith("_delivery")}


def test_delivery_kinds_are_the_configured_destinations(monkeypatch):
    for name in ("ISPOT_CLIENT_ID", "ISPOT_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    kinds = _kinds(specs())
    assert kinds == {
        "lotame/segmentmembership_delivery": {"local"},
        "ispot/conversions_delivery": {"local"},
        "optimove/customers_delivery": {"local"},
        "optimove/transactions_delivery": {"local"},
        "digital_audience/crm_delivery": {"local"},
        "idomoo/data_file_delivery": {"local"},
        "idomoo/renewal_data_file_delivery": {"local"},  # the second storyboard
    }
    monkeypatch.setenv("DELIVERY_LOTAME_DESTINATION", "s3")
    monkeypatch.setenv("DELIVERY_LOTAME_S3_BUCKET", "lotame-in")
    monkeypatch.setenv("DELIVERY_OPTIMOVE_DESTINATION", "gcs")
    monkeypatch.setenv("DELIVERY_OPTIMOVE_GCS_BUCKET", "opt")
    monkeypatch.setenv("ISPOT_CLIENT_ID", "id")
    monkeypatch.setenv("ISPOT_CLIENT_SECRET", "secret")
    kinds = _kinds(specs("production"))
    assert kinds["lotame/segmentmembership_delivery"] == {"s3"}
    assert kinds["optimove/customers_delivery"] == kinds["optimove/transactions_delivery"] == {"gcs"}
    assert kinds["ispot/conversions_delivery"] == {"api"}
    assert kinds["idomoo/data_file_delivery"] == {"local"}


def test_every_vendor_asset_has_its_vendors_code_version():
    for key, spec in specs().items():
        if key.path[0] in VENDORS:
            assert spec.code_version == presentation.code_version(key.path[0]), key


def test_the_code_version_changes_with_the_vendors_code(tmp_path, monkeypatch):
    package = tmp_path / "delivery_platform"
    shutil.copytree(presentation.PACKAGE / "vendors" / "lotame", package / "vendors" / "lotame")
    shutil.copytree(presentation.PACKAGE / "formats", package / "formats")
    monkeypatch.setattr(presentation, "PACKAGE", package)
    presentation.code_version.cache_clear()
    try:
        before = presentation.code_version("lotame")
        presentation.code_version.cache_clear()
        assert presentation.code_version("lotame") == before  # stable
        spec = package / "vendors" / "lotame" / "spec.py"
        spec.write_text(spec.read_text() + "\n# a rule changed\n")
        presentation.code_version.cache_clear()
        changed = presentation.code_version("lotame")
        assert changed != before
        (package / "formats" / "lines.py").write_text("# the writer changed\n")
        presentation.code_version.cache_clear()
        assert presentation.code_version("lotame") not in (before, changed)
    finally:
        presentation.code_version.cache_clear()


def test_staged_assets_carry_the_column_schema_of_their_pandera_model():
    all_specs = specs()
    staged = [(v.name, name, model) for v in REGISTRY for name, model in presentation.staged_models(v).items()]
    assert len(staged) >= 7  # every vendor's staged rows, and the returns
    for vendor, name, model_class in staged:
        schema = all_specs[dg.AssetKey([vendor, name])].metadata["dagster/column_schema"]
        schema = getattr(schema, "schema", schema)
        assert model_class in vendor_models(vendor), (vendor, name)
        model = model_class.to_schema()
        assert [c.name for c in schema.columns] == list(model.columns), (vendor, name)
        described = {n: ui_text(c.description or c.title or "") for n, c in model.columns.items()}
        assert {c.name: c.description for c in schema.columns} == described, (vendor, name)
        assert any(c.description for c in schema.columns), (vendor, name)
    ispot = all_specs[dg.AssetKey(["ispot", "conversions"])].metadata["dagster/column_schema"]
    siteid = next(c for c in getattr(ispot, "schema", ispot).columns if c.name == "siteid")
    assert siteid.description.startswith("`TC-<account>-<site>`") and siteid.type == "str"
    assert any("str_matches" in rule for rule in siteid.constraints.other)


def test_no_description_shows_bare_angle_brackets():
    """Angle brackets opening a tag outside code spans are eaten as HTML by the UI ('TC--'); a
    comparison such as `D < valid_to` is not a tag."""
    found = []
    for key, spec in specs().items():
        texts = [spec.description or ""]
        schema = spec.metadata.get("dagster/column_schema")
        if schema is not None:
            texts += [c.description or "" for c in getattr(schema, "schema", schema).columns]
        found += [(key.to_user_string(), t) for t in texts if TAG.search(outside_code(t))]
    assert found == []
    warehouse = specs()[dg.AssetKey(["warehouse", "ispot_conversion_events"])].metadata[
        "dagster/column_schema"
    ]
    site = next(c for c in getattr(warehouse, "schema", warehouse).columns if c.name == "site_id")
    assert "`TC-<account>-<site>`" in site.description


@pytest.mark.parametrize(
    "text,shown",
    [
        ("code TC-<account>-<site>, padded", "code `TC-<account>-<site>`, padded"),
        ("already `<client>_x.csv` quoted", "already `<client>_x.csv` quoted"),
        ("no brackets", "no brackets"),
    ],
)
def test_ui_text(text, shown):
    assert ui_text(text) == shown


def test_materializations_report_dagster_row_count(data_dir):
    job = build_defs("local").resolve_job_def("ispot_daily_delivery")
    result = job.execute_in_process(
        partition_key="2026-11-19", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert result.success
    events = {
        e.asset_key.to_user_string(): e.metadata
        for e in (m.event_specific_data.materialization for m in result.get_asset_materialization_events())
    }
    assert set(events) == {"ispot/conversions", "ispot/conversion_files", "ispot/conversions_delivery"}
    for name, metadata in events.items():
        assert metadata["dagster/row_count"].value == metadata["rows"].value, name
    assert events["ispot/conversions"]["dagster/row_count"].value > 0
