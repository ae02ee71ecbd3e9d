"""Every upload is answered: when each data file went up, which keys it carried, and which PURL
files are overdue.

The delivery step records each upload in the state store (state_store.py), by `core.clock` so a
simulated calendar sees its own days: `state/idomoo/uploads/<name>.json` (when) and
`<name>.keys.parquet` (the recipient keys sent, the key column only: no other field leaves the
run). The Downloads sensor compares the time with `purl_return_hours` and alerts once per data
file whose PURL (or error) file has not arrived by then; `every_row_came_back` compares the keys
with the PURL file's. Both survive a wiped worker.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from ...core.sql import quote_ident, sql_literal
from ...state_store import state_store
from . import spec

KEEP_DAYS = 30  # Idomoo keeps PURL files for 30 days (DIGEST 5.2): older uploads are not chased
PREFIX = "state/idomoo/uploads/"


def _key(name: str, suffix: str) -> str:
    return PREFIX + name.replace("/", "~") + suffix


def record_upload(name: str, at: float, rows: Path | None = None, key_header: str | None = None) -> None:
    """Remember that `name` (as uploaded, e.g. `Uploads/x.csv`) went up at `at` (epoch seconds) and,
    given the staged `rows`, which keys it carried."""
    store = state_store()
    if rows is not None and key_header and not store.exists(_key(name, ".keys.parquet")):
        keys = rows.with_name(f".{rows.stem}.keys.parquet")
        con = duckdb.connect()
        try:
            con.execute(f"COPY (SELECT {quote_ident(key_header)} FROM read_parquet({sql_literal(str(rows))})) "
                        f"TO {sql_literal(str(keys))} (FORMAT parquet)")
        finally:
            con.close()
        store.put(_key(name, ".keys.parquet"), keys)
        keys.unlink(missing_ok=True)
    if store.exists(_key(name, ".json")):  # the first upload time counts (a re-run that sent nothing keeps it)
        return
    store.put_bytes(_key(name, ".json"), json.dumps({"name": name, "uploaded_at": at}))


def uploaded_keys(name: str) -> Path | None:
    """A local Parquet file of the keys uploaded in `name` (None when not recorded)."""
    store = state_store()
    key = _key(name, ".keys.parquet")
    return store.get(key) if store.exists(key) else None


def uploads() -> list[dict]:
    store = state_store()
    return [json.loads(store.read_bytes(k)) for k in store.list(PREFIX) if k.endswith(".json")]


def overdue_returns(listing, s, now: float) -> list[str]:
    """Uploaded names whose PURL file (or error file) is not in the Downloads listing (any
    sub-folder) `s.purl_return_hours` after the upload."""
    present = {f.name.rsplit("/", 1)[-1] for f in listing}
    overdue = []
    for upload in uploads():
        age = now - upload["uploaded_at"]
        if age <= s.purl_return_hours * 3600 or age > KEEP_DAYS * 86400:
            continue
        base = upload["name"].rsplit("/", 1)[-1]
        answers = {spec.purl_name(base, s.purl_prefix, s.purl_suffix), f"{s.error_prefix}{base}"}
        if not answers & present:
            overdue.append(upload["name"])
    return overdue
