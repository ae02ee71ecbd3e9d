"""Delivery receipts: one JSON document per delivered partition, what an operator sends a vendor
in a dispute.

Written by `deliver_files` when a partition's whole file set is at the vendor, from the ledger
(names, URIs, bytes, MD5s, rows, times, run ids) plus the checked rows' first and last event time,
the hash of the vendor's spec module, the code version and the vendor's answer where there is one
(the deliverable's `answer`, registry.py).
Stored beside the ledger under `receipts/<vendor>/<deliverable>/<partition>.json`; shown as the
delivery asset's metadata; printed by `python -m delivery_platform receipt <vendor> <partition>`.
Answers that arrive later (Idomoo's PURL file, dA's matches) are filled in when a receipt is read.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib
import json
import os
import subprocess
from pathlib import Path

import dagster as dg
import duckdb

from . import settings
from .checked import CHECKED, read_checked
from .core import clock
from .core.files import write_atomic
from .core.sql import sql_literal
from .ledger import Ledger
from .state_store import durable
from .registry import Deliverable

SCHEMA_VERSION = 1


def receipts_dir(ledger: Ledger) -> Path:
    return ledger.path.parent / "receipts"


def receipt_path(ledger: Ledger, vendor: str, deliverable: str, partition_key: str) -> Path:
    return receipts_dir(ledger) / vendor / deliverable / f"{partition_key}.json"


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    """`DELIVERY_CODE_VERSION` if the deployment sets it, else the git commit of the checkout."""
    if os.environ.get("DELIVERY_CODE_VERSION"):
        return os.environ["DELIVERY_CODE_VERSION"]
    try:
        done = subprocess.run(
            ["git", "-C", str(settings.PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "-C", str(settings.PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "unknown"
    if done.returncode:
        return "unknown"
    return done.stdout.strip() + ("+modified" if dirty.stdout.strip() else "")


def spec_hash(module_name: str) -> dict:
    """SHA-256 of the vendor's spec module source: the pandera models the files were checked with."""
    module = importlib.import_module(module_name)
    source = Path(module.__file__).read_bytes()
    return {"module": module_name, "sha256": hashlib.sha256(source).hexdigest()}


def event_span(d: Deliverable | None, partition_key: str) -> dict:
    """First and last event time of the delivered rows, where the rows carry one (taken by the spec check)."""
    if d is None or d.event_column is None:
        return {"first_event": None, "last_event": None, "event_note": "the rows carry no event time"}
    stage = settings.staging_dir() / d.vendor / d.name / partition_key
    checked = read_checked(stage)
    if checked is None or not checked.get("event_span"):
        why = (f"no spec check of these rows recorded at {stage / CHECKED}" if checked is None
               else f"the checked rows have no column {d.event_column}")
        return {"first_event": None, "last_event": None, "event_note": why}
    span = checked["event_span"]
    return {"first_event": span["first_event"], "last_event": span["last_event"],
            "event_note": f"min and max of {span['column']}"}


# --- the vendor's answer --------------------------------------------------------------------
def vendor_answer(d: Deliverable, partition_key: str, destination: str, files: list[dict]) -> dict:
    if d.answer is None:
        return {"kind": "none", "meaning": f"{d.vendor} sends no answer for this delivery"}
    return d.answer(partition_key, destination, files)


def parquet_rows(path: Path) -> int:
    con = duckdb.connect()
    try:
        return con.execute(f"SELECT count(*) FROM read_parquet({sql_literal(str(path))})").fetchone()[0]
    finally:
        con.close()


# --- building, storing, reading ---------------------------------------------------------------
def build(ledger: Ledger, d: Deliverable, partition_key: str, *, destination: str, action: str) -> dict:
    vendor, deliverable = d.vendor, d.name
    delivered = sorted(ledger.delivered(vendor, deliverable, partition_key), key=lambda r: r.id)
    if not delivered:
        raise ValueError(f"{vendor}/{deliverable} {partition_key} has no delivered files in the ledger")
    files = [
        {
            "name": r.file_name,
            "uri": r.remote_uri,
            "bytes": r.bytes,
            "md5": r.md5,
            "rows": r.rows,
            "attempt": r.attempt,
            "run_id": r.run_id,
            "started_at": r.started_at,
            "delivered_at": r.finished_at,
        }
        for r in delivered
    ]
    return {
        "receipt_version": SCHEMA_VERSION,
        "vendor": vendor,
        "deliverable": deliverable,
        "partition": partition_key,
        "destination": destination,
        "action": action,
        "run_ids": sorted({r.run_id for r in delivered if r.run_id}),
        "started_at": min(r.started_at for r in delivered),
        "finished_at": max(r.finished_at or r.started_at for r in delivered),
        # by the platform's clock (the ledger's times are the wall clock's): what "late" is judged on
        "completed_at": clock.now().isoformat(timespec="seconds"),
        "file_count": len(files),
        "bytes": sum(f["bytes"] or 0 for f in files),
        "rows": sum(f["rows"] or 0 for f in files if not f["name"].endswith((".md5", ".done"))),
        **event_span(d, partition_key),
        "spec": spec_hash(d.spec_module) if d.models else None,
        "code_version": code_version(),
        "vendor_answer": vendor_answer(d, partition_key, destination, files),
        "files": files,
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _key(vendor: str, deliverable: str, partition_key: str) -> str:
    return f"receipts/{vendor}/{deliverable}/{partition_key}.json"


def store(ledger: Ledger, doc: dict) -> Path:
    """Beside the ledger; and, with state in object storage (state_store.py), there too, so a receipt
    outlives the worker that wrote it."""
    text = json.dumps(doc, indent=1, default=str)
    kept = durable()
    if kept is not None:
        kept.put_bytes(_key(doc["vendor"], doc["deliverable"], doc["partition"]), text)
    path = receipt_path(ledger, doc["vendor"], doc["deliverable"], doc["partition"])
    return write_atomic(path, text)


def record(ledger: Ledger, d: Deliverable, partition_key: str, *, destination: str, action: str) -> tuple[Path, dict]:
    """Build and store the receipt of a partition whose files are all at the vendor."""
    doc = build(ledger, d, partition_key, destination=destination, action=action)
    return store(ledger, doc), doc


def load(ledger: Ledger, deliverables: Deliverable | list[Deliverable], partition_key: str) -> list[dict]:
    """The stored receipts of these deliverables' partition, answers brought up to date."""
    docs = []
    for d in [deliverables] if isinstance(deliverables, Deliverable) else deliverables:
        path, kept = receipt_path(ledger, d.vendor, d.name, partition_key), durable()
        if kept is not None and kept.exists(_key(d.vendor, d.name, partition_key)):
            doc = json.loads(kept.read_bytes(_key(d.vendor, d.name, partition_key)))
        elif path.exists():
            doc = json.loads(path.read_text())
        else:
            continue
        answer = vendor_answer(d, partition_key, doc["destination"], doc["files"])
        if answer != doc.get("vendor_answer"):
            doc["vendor_answer"] = answer
            store(ledger, doc)
        docs.append(doc)
    return docs


def markdown(doc: dict) -> str:
    """The receipt as the delivery asset shows it."""
    answer = doc.get("vendor_answer") or {}
    spec = doc.get("spec") or {}
    head = [
        ("partition", doc["partition"]),
        ("destination", doc["destination"]),
        ("run", ", ".join(doc["run_ids"])),
        ("started / finished (UTC)", f"{doc['started_at']} / {doc['finished_at']}"),
        ("files / bytes / rows", f"{doc['file_count']} / {doc['bytes']:,} / {doc['rows']:,}"),
        ("first / last event", f"{doc.get('first_event') or '-'} / {doc.get('last_event') or '-'}"),
        ("spec", f"{spec.get('module', '-')} sha256 `{(spec.get('sha256') or '')[:16]}`"),
        ("code version", f"`{doc['code_version']}`"),
        ("vendor's answer", answer.get("meaning", "-")),
    ]
    lines = ["| receipt | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in head]
    lines += ["", "| file | uri | bytes | md5 | rows | delivered at |", "|---|---|---:|---|---:|---|"]
    lines += [
        f"| {f['name']} | {f['uri']} | {f['bytes'] or 0:,} | `{f['md5']}` | "
        f"{f['rows'] if f['rows'] is not None else ''} | {f['delivered_at']} |"
        for f in doc["files"]
    ]
    return "\n".join(lines)


def metadata(path: Path, doc: dict) -> dict:
    return {"receipt": dg.MetadataValue.md(markdown(doc)), "receipt_path": dg.MetadataValue.path(str(path))}
