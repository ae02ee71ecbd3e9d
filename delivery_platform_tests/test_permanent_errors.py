"""Permanent errors fail a step at once: the delivery retry policy is for transient faults only."""

from __future__ import annotations

import dagster as dg
import pytest

from delivery_platform.definitions import build_defs
from delivery_platform.manifest import MANIFEST, ManifestMissing, read_manifest
from delivery_platform.vendors.idomoo.assets import STORYBOARDS, settings_from_env

DELIVERY_ASSETS = ["ispot/conversions_delivery", "lotame/segmentmembership_delivery",
                   "optimove/customers_delivery", "optimove/transactions_delivery",
                   "digital_audience/crm_delivery", "idomoo/data_file_delivery",
                   "idomoo/renewal_data_file_delivery"]


def test_every_delivery_asset_is_listed_here():
    defs = build_defs("local")
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()
            if key.path[-1].endswith("_delivery")}
    assert keys == set(DELIVERY_ASSETS)


def test_a_missing_file_list_is_a_failure_that_refuses_retries(tmp_path):
    folder = tmp_path / "staging" / "optimove" / "customers" / "2026-11-19" / "files"
    folder.mkdir(parents=True)
    with pytest.raises(ManifestMissing) as raised:
        read_manifest(folder)
    assert isinstance(raised.value, dg.Failure) and raised.value.allow_retries is False
    assert isinstance(raised.value, FileNotFoundError)  # "no earlier manifest" stays catchable
    assert str(folder / MANIFEST) in raised.value.description
    assert "2026-11-19" in raised.value.description and "materialize the `_files` asset" in raised.value.description


@pytest.mark.parametrize("asset", DELIVERY_ASSETS)
def test_delivery_without_its_files_fails_at_once_without_a_retry(asset, data_dir, monkeypatch):
    """The docs' old `redeliver` example: only the `_delivery` asset selected, its file list absent.
    Before, the retry policy retried this for minutes; now the step fails once, with the remedy."""
    monkeypatch.setenv("DELIVERY_RETRY_MAX", "3")  # the production bound, read when the definitions load
    defs = build_defs("local")
    job = defs.resolve_implicit_global_asset_job_def()
    key = dg.AssetKey.from_user_string(asset)
    retry = defs.resolve_assets_def(key).op.retry_policy
    assert retry is not None and retry.max_retries == 3  # the policy is there; the error must bypass it
    partition = "2026-11-20" if asset.startswith("idomoo/") else "2026-11-19"
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(asset_selection=[key], partition_key=partition, instance=instance,
                                        raise_on_error=False)
        assert not result.success
        types = [e.event_type_value for e in result.all_events]
        assert "STEP_RESTARTED" not in types and "STEP_UP_FOR_RETRY" not in types, types
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert len(failures) == 1
        message = failures[0].step_failure_data.error.message
        assert "does not exist" in message and "Retrying cannot help" in message


def test_a_refused_redelivery_is_not_retried(tmp_path):
    """Other bytes for a delivered partition: the ledger's refusal is final for this run config."""
    from delivery_platform.delivery import DeliveryRefused, OutgoingFile, deliver_files
    from delivery_platform.destinations.local import LocalDestination
    from delivery_platform.ledger import AlreadyDeliveredDifferently, Ledger

    dest, ledger = LocalDestination("lotame", tmp_path / "outbox"), Ledger(tmp_path / "ledger.sqlite")

    def deliver(body: bytes, run_id: str):
        path = tmp_path / run_id / "data.csv"
        path.parent.mkdir()
        path.write_bytes(body)
        return deliver_files(vendor="lotame", deliverable="segments", partition_key="2026-11-19",
                             files=[OutgoingFile(path, "data.csv", rows=1)], destination=dest, ledger=ledger,
                             run_id=run_id)

    deliver(b"v1", "r1")
    with pytest.raises(DeliveryRefused) as raised:
        deliver(b"v2", "r2")
    assert isinstance(raised.value, AlreadyDeliveredDifferently)  # what callers and tests already catch
    assert isinstance(raised.value, dg.Failure) and raised.value.allow_retries is False
    assert "redeliver=True" in str(raised.value) and "Not retried" in str(raised.value)


def _chain_keys(defs, delivery: str) -> tuple[dg.AssetKey, dg.AssetKey]:
    """The files and rows assets a delivery asset is built from (its vendor's own parents)."""
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey.from_user_string(delivery)
    (files,) = [k for k in graph.get(key).parent_keys if k.path[0] == key.path[0]]
    (rows,) = [k for k in graph.get(files).parent_keys if k.path[0] == key.path[0]]
    return files, rows


@pytest.mark.parametrize("delivery", DELIVERY_ASSETS)
def test_files_are_built_only_from_rows_whose_last_spec_check_passed(delivery, data_dir):
    """The UI lets a user materialize a files asset alone, which runs no check of its rows: rows staged
    with their check left out are refused, for every vendor, and nothing is written; once the rows pass
    their check, the same files asset builds."""
    defs = build_defs("local")
    files, rows = _chain_keys(defs, delivery)
    partition = "2026-11-20" if delivery.startswith("idomoo/") else "2026-11-19"

    def run(selection):
        return dg.materialize([*defs.assets, *defs.asset_checks], selection=selection, resources=defs.resources,
                              partition_key=partition, instance=instance, raise_on_error=False)

    with dg.DagsterInstance.ephemeral() as instance:
        assert run(dg.AssetSelection.assets(rows).without_checks()).success
        alone = run(dg.AssetSelection.assets(files))
        assert not alone.success
        failures = [e for e in alone.all_events if e.event_type_value == "STEP_FAILURE"]
        assert len(failures) == 1
        message = failures[0].step_failure_data.error.message
        assert "have not passed their spec check since they were staged" in message and partition in message
        staging = data_dir / "staging"
        built = [p for p in staging.rglob("*") if p.is_file() and "files" in p.relative_to(staging).parts]
        assert not built, built  # nothing under any partition's files folder
        checked = run(dg.AssetSelection.assets(rows))  # with its blocking spec check
        assert checked.success and {e.check_name: e.passed for e in checked.get_asset_check_evaluations()}["spec"]
        assert run(dg.AssetSelection.assets(files)).success


def test_rows_judged_outside_their_limits_do_not_build_files(data_dir):
    """The verdict the files step reads is the check's as judged: Idomoo rows that meet the model but
    number more than the storyboard allows fail the check, and the files alone are refused."""
    defs = build_defs("local")
    files, rows = _chain_keys(defs, "idomoo/data_file_delivery")
    board = next(b for b in STORYBOARDS if b.settings_key == "idomoo_settings")
    settings = settings_from_env(**{**board.overrides, "max_rows": 1})
    with dg.DagsterInstance.ephemeral() as instance:
        checked = dg.materialize([*defs.assets, *defs.asset_checks], selection=dg.AssetSelection.assets(rows),
                                 resources={**defs.resources, "idomoo_settings": settings}, partition_key="2026-11-20",
                                 instance=instance, raise_on_error=False)
        spec = {e.check_name: e for e in checked.get_asset_check_evaluations()}["spec"]
        assert not spec.passed and "outside the allowed 1..1" in spec.description
        assert spec.metadata["failure_count"].value == 0  # every row meets the model: the judge failed it
        alone = dg.materialize([*defs.assets, *defs.asset_checks], selection=dg.AssetSelection.assets(files),
                               resources=defs.resources, partition_key="2026-11-20", instance=instance,
                               raise_on_error=False)
        assert not alone.success
        errors = " ".join(str(e.event_specific_data.error.message) for e in alone.all_events if e.is_step_failure)
        assert "have not passed their spec check since they were staged" in errors
