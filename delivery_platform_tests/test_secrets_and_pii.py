"""Every vendor's delivery with recognisable fake secrets and PII: none of them may appear in the
event log, run logs, asset or check metadata, or exception texts; hash-only vendors get no raw PII."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pytest

from delivery_platform.definitions import build_defs
from delivery_platform.vendors import NAMES as VENDORS
from delivery_platform_tests.ispot_api_double import ISpotApiServer, ISpotDouble

ISPOT_SECRET = "CANARYispotSECRET0000000000000000000000"
AWS_SECRET = "CANARY/aws+SECRET/key000000000000000000000"


def event_texts(instance: dg.DagsterInstance, run_id: str) -> str:
    parts = []
    for record in instance.all_logs(run_id):
        parts.append(record.message or "")
        parts.append(record.user_message or "")
        if record.dagster_event is not None:
            parts.append(repr(record.dagster_event))
            data = record.dagster_event.event_specific_data
            parts.append(json.dumps(getattr(data, "__dict__", {}), default=repr))
    return "\n".join(parts)


@pytest.mark.fault("all vendors", "secrets and PII scan of event log, metadata and errors",
                   "no secret and no raw CRM email or phone in any of them")
def test_no_secret_or_raw_pii_leaves_through_logs_metadata_or_errors(data_dir, small_warehouse, monkeypatch, s3_server,
                                                                     sftp_server):
    state = ISpotDouble(client_secret=ISPOT_SECRET)
    with ISpotApiServer(state) as api:
        monkeypatch.setenv("ISPOT_API_BASE_URL", api.url)
        monkeypatch.setenv("ISPOT_CLIENT_ID", state.client_id)
        monkeypatch.setenv("ISPOT_CLIENT_SECRET", ISPOT_SECRET)
        monkeypatch.setenv("ISPOT_MIN_UPLOAD_BYTES", "1000")  # iSpot's 8 MB minimum, scaled to the small day
        for vendor in ("lotame", "optimove"):
            env = s3_server.env(vendor, **{f"DELIVERY_{vendor.upper()}_AWS_SECRET_ACCESS_KEY": AWS_SECRET})
            for key, value in env.items():
                monkeypatch.setenv(key, value)
        for key, value in sftp_server.env("digital_audience").items():
            monkeypatch.setenv(key, value)
        defs = build_defs("local")
        instance = dg.DagsterInstance.ephemeral()
        texts = []
        for vendor in VENDORS:
            result = defs.resolve_job_def(f"{vendor}_daily_delivery").execute_in_process(
                partition_key="2026-11-19", instance=instance, raise_on_error=False)
            assert result.success, vendor
            texts.append(event_texts(instance, result.run_id))
        # a failing run: the secret rejected by the API must not appear in the error either
        monkeypatch.setenv("ISPOT_CLIENT_SECRET", ISPOT_SECRET[::-1])
        monkeypatch.setenv("ISPOT_CLIENT_ID", "otherclient000000000")  # no cached token for this one
        failed = build_defs("local").resolve_job_def("ispot_daily_delivery").execute_in_process(
            partition_key="2026-11-18", instance=instance, raise_on_error=False)
        assert not failed.success
        texts.append(event_texts(instance, failed.run_id))
        tokens = list(state.tokens)
    everything = "\n".join(texts)
    assert "token request refused (401)" in everything  # the failure is reported ...
    for secret in (ISPOT_SECRET, ISPOT_SECRET[::-1], AWS_SECRET, sftp_server.password, *tokens):
        assert secret not in everything  # ... without any secret
    con = duckdb.connect(str(small_warehouse), read_only=True)
    emails = [r[0].strip() for r in con.execute("SELECT email_raw FROM crm_contacts WHERE email_raw IS NOT NULL").fetchall()]
    phones = [r[0] for r in con.execute("SELECT phone_raw FROM crm_contacts WHERE phone_raw IS NOT NULL").fetchall()]
    lowered = everything.lower()
    assert not [e for e in emails if e.lower().replace(" ", "") in lowered]
    assert not [p for p in phones if p in everything]
    # the files dA received hold hashes only
    received = "\n".join(p.read_text().lower() for p in (sftp_server.root).rglob("acme_crm_*.csv"))
    assert received and not [e for e in emails if e.lower().replace(" ", "") in received]
