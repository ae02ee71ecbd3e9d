"""Delivery receipts written by real delivery runs: their contents against the ledger and the files
at the destination, the vendor's answer (iSpot's 201 through the API double, Idomoo's PURL file back
through the simulator and the Downloads sensor), the asset metadata and the CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb

from delivery_platform import settings
from delivery_platform.definitions import build_defs
from delivery_platform.ledger import Ledger
from delivery_platform import receipts
from delivery_platform.demo import run_daily
from delivery_platform.vendors import deliverable, vendor
from delivery_platform_tests.ispot_api_double import ISpotApiServer

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-19"


def _run(vendor: str, partition: str = DAY, instance=None):
    job = build_defs("local").resolve_job_def(f"{vendor}_daily_delivery")
    return job.execute_in_process(
        partition_key=partition, instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_receipt_matches_the_ledger_and_the_files_at_the_destination(data_dir):
    result = _run("lotame")
    assert result.success
    ledger = Ledger()
    path = receipts.receipt_path(ledger, "lotame", "segmentmembership", DAY)
    assert path.parent.parent.parent == ledger.path.parent / "receipts"  # beside the ledger
    doc = json.loads(path.read_text())
    delivered = {d.file_name: d for d in ledger.delivered("lotame", "segmentmembership", DAY)}
    assert [f["name"] for f in doc["files"]] == [
        d.file_name for d in sorted(delivered.values(), key=lambda d: d.id)
    ]
    outbox = settings.outbox_dir() / "lotame"
    for f in doc["files"]:
        row, local = delivered[f["name"]], outbox / f["name"]
        assert (f["md5"], f["bytes"], f["rows"], f["uri"]) == (row.md5, row.bytes, row.rows, row.remote_uri)
        assert f["md5"] == _md5(local) and f["bytes"] == local.stat().st_size  # what the vendor holds
        assert f["delivered_at"] == row.finished_at and f["run_id"] == result.run_id
    assert doc["run_ids"] == [result.run_id] and doc["file_count"] == len(delivered)
    assert doc["bytes"] == sum(p.stat().st_size for p in outbox.rglob("*") if p.is_file())
    data_lines = sum(1 for p in outbox.rglob("*.json.gz") for _ in __import__("gzip").open(p))
    assert doc["rows"] == data_lines
    spec = ROOT / "delivery_platform" / "vendors" / "lotame" / "spec.py"
    assert doc["spec"]["sha256"] == hashlib.sha256(spec.read_bytes()).hexdigest()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout
    assert doc["code_version"].startswith(head.strip())
    assert doc["vendor_answer"]["kind"] == "none"
    # the delivery asset shows it
    materialization = result.asset_materializations_for_node("lotame__segmentmembership_delivery")[0]
    table = materialization.metadata["receipt"].value
    assert all(f["md5"] in table for f in doc["files"]) and result.run_id in table
    assert materialization.metadata["receipt_path"].value == str(path)
    # a re-run sends nothing and keeps the same receipt
    again = _run("lotame")
    assert again.success and json.loads(path.read_text())["run_ids"] == [result.run_id]
    # a partition delivered without a receipt (lost, or from before receipts) gets one on a re-run
    path.unlink()
    assert _run("lotame").success and json.loads(path.read_text())["run_ids"] == [result.run_id]
    # the CLI prints it
    printed = subprocess.run(
        [sys.executable, "-m", "delivery_platform", "receipt", "lotame", DAY],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        cwd=ROOT,
        timeout=120,
    )
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == json.loads(path.read_text())
    missing = subprocess.run(
        [sys.executable, "-m", "delivery_platform", "receipt", "lotame", "2026-11-02"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        cwd=ROOT,
        timeout=120,
    )
    assert missing.returncode == 1 and "no receipt for lotame 2026-11-02" in missing.stderr


def test_the_ispot_receipt_carries_the_api_answer_and_the_event_span(data_dir, monkeypatch):
    monkeypatch.setenv("ISPOT_SITE_IDS", "TC-1234-1,TC-1234-2")
    monkeypatch.setenv("ISPOT_MIN_UPLOAD_BYTES", "1000")  # a small test day, not iSpot's 8 MB
    with ISpotApiServer() as api:
        monkeypatch.setenv("ISPOT_API_BASE_URL", api.url)
        monkeypatch.setenv("ISPOT_CLIENT_ID", api.state.client_id)
        monkeypatch.setenv("ISPOT_CLIENT_SECRET", api.state.client_secret)
        result = _run("ispot")
        received = dict(api.state.received)
    assert result.success
    [doc] = receipts.load(Ledger(), vendor("ispot").deliverables, DAY)
    assert doc["destination"] == "ispot-api" and doc["vendor_answer"]["status"] == 201
    assert sorted(f["name"] for f in doc["files"]) == sorted(received)
    for f in doc["files"]:
        assert f["md5"] == hashlib.md5(received[f["name"]].body).hexdigest()
    times = [
        row["datetime"]
        for body in received.values()
        for row in csv.DictReader(body.body.decode().splitlines())
    ]
    assert (doc["first_event"], doc["last_event"]) == (min(times), max(times))
    assert doc["rows"] == len(times)
    assert api.state.client_secret not in json.dumps(doc)


def played(name: str, defs, instance, day: str) -> dict:
    """The day's run, then the vendor's side played by the simulators (what the demo does)."""
    from delivery_platform import simulators

    outcome = run_daily(defs, instance, name, day)
    return {**outcome, "extra": simulators.answer(name, defs, instance, outcome, day)}


def test_the_idomoo_receipt_learns_that_the_purl_file_came_back(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    defs = build_defs("local")
    outcome = played("idomoo", defs, instance, DAY)  # upload, the simulator answers, the sensor takes the PURL in
    assert outcome["success"] and any("ingested" in line for line in outcome["extra"])
    [doc] = receipts.load(Ledger(), deliverable("idomoo", "data_file"), DAY)
    answer = doc["vendor_answer"]
    assert answer["purl_received"] is True
    stored = settings.returns_dir() / "idomoo_purls" / f"{answer['purl_files'][0]['purl_file']}.parquet"
    rows = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{stored}')").fetchone()[0]
    assert answer["purl_files"][0]["rows"] == rows == doc["rows"]


def test_the_digital_audience_receipt_counts_the_matches_that_came_back(data_dir):
    before = receipts.vendor_answer(deliverable("digital_audience", "crm"), DAY, "local", [])
    assert before["matched_records"] == 0 and before["meaning"] == "no match export received yet"
    outcome = played("digital_audience", build_defs("local"), dg.DagsterInstance.ephemeral(), DAY)
    assert outcome["success"] and any("matches ingested" in line for line in outcome["extra"])
    [doc] = receipts.load(Ledger(), vendor("digital_audience").deliverables, DAY)
    inbox = settings.data_dir() / "inbox" / "digital_audience"
    sent = inbox / f"acme_matches_{DAY.replace('-', '')}.csv"
    crm_ids = {line.split(",")[1] for line in sent.read_text().splitlines()[1:]}
    answer = doc["vendor_answer"]
    assert answer["matched_records"] == len(crm_ids) > 0 and answer["match_files"] == 1
    assert answer["delivered_records"] == doc["rows"]


def test_the_cli_prints_every_deliverable_of_a_vendor_or_the_one_asked_for(data_dir, tmp_path, capsys):
    from delivery_platform.__main__ import main

    ledger = Ledger()
    for table in ("customers", "transactions"):
        name = f"{table}/{table}_20261119_001.csv.gz"
        attempt = ledger.begin(
            "optimove",
            table,
            DAY,
            name,
            bytes=10,
            md5="a" * 32,
            rows=2,
            remote_uri=f"s3://b/{name}",
            run_id="run-1",
        )
        ledger.finish(attempt, "delivered")
        receipts.record(ledger, deliverable("optimove", table), DAY, destination="s3", action="send")
    assert main(["receipt", "optimove", DAY]) == 0
    both = json.loads(capsys.readouterr().out)
    assert [d["deliverable"] for d in both] == ["customers", "transactions"]
    assert both[0]["files"][0]["uri"] == "s3://b/customers/customers_20261119_001.csv.gz"
    assert (
        main(["receipt", "optimove", DAY, "--deliverable", "transactions", "--out", str(tmp_path / "r.json")])
        == 0
    )
    assert json.loads((tmp_path / "r.json").read_text())["deliverable"] == "transactions"
