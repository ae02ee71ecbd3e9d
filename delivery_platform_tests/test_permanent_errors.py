"""Permanent errors fail a step at once: the delivery retry policy is for transient faults only."""

from __future__ import annotations

import dagster as dg
import pytest

from delivery_platform.definitions import build_defs
from delivery_platform.manifest import MANIFEST, ManifestMissing, read_manifest

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
