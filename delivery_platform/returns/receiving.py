"""Taking in files a vendor sends back: our copy first, and never at the cost of an earlier one.

Vendors re-send files under the same name (a corrected PURL file, a match export refreshed in
place). The sensors give each new version its own run; here each version's bytes are kept in the
state store (state_store.py): the newest under `received/<vendor>/<key>`, an earlier different
version moved aside to `<key>~<md5 prefix>`. The same applies to `quarantine/<vendor>/`, where
rejected files wait for a human. Nothing received is ever deleted.
"""

from __future__ import annotations

from pathlib import Path

from .. import settings
from ..core.files import file_md5
from ..destinations.base import Destination
from ..state_store import StateStore


def _set_aside(store: StateStore, key: str, incoming_md5: str) -> None:
    """Before a new version replaces `key`, keep a different stored one as `key~<md5>`."""
    earlier = store.md5(key)
    if earlier is None or earlier == incoming_md5:
        return
    aside = f"{key}~{earlier[:12]}"
    if not store.exists(aside):
        store.put(aside, store.get(key))


def _keep(store: StateStore, key: str, local: Path) -> Path:
    _set_aside(store, key, file_md5(local))
    store.put(key, local)
    return store.get(key)


def incoming_dir(vendor: str) -> Path:
    """Run-local: where a received file lands before the store has it (staging is run-local)."""
    return settings.staging_dir() / "_received" / vendor


def keep_received(source: Destination, remote: str, store: StateStore, vendor: str, key: str) -> Path:
    """Download `remote` and keep it as `received/<vendor>/<key>` (an earlier different version
    kept beside it); returns a local path of the kept bytes."""
    incoming = source.download(remote, incoming_dir(vendor) / f".{key}.incoming")
    try:
        return _keep(store, f"received/{vendor}/{key}", incoming)
    finally:
        incoming.unlink(missing_ok=True)


def quarantine(store: StateStore, kept: Path, vendor: str, key: str) -> str:
    """Keep a rejected file as `quarantine/<vendor>/<key>` for a human; returns where."""
    _keep(store, f"quarantine/{vendor}/{key}", kept)
    return store.uri(f"quarantine/{vendor}/{key}")


def csv_error(exc: Exception) -> str:
    """DuckDB's CSV error in one line: where, why, and the start of the offending row
    (its own text runs to pages of reader options and would paste a 5 MB field whole)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    where = next((line for line in lines if line.startswith(("Invalid Input Error", "Conversion Error"))), lines[0])
    why = next((line for line in lines if line.startswith(("Expected Number of Columns", "Maximum line size",
                                                           "Value with unterminated quote", "Invalid unicode"))), "")
    row = next((line[len("Original Line: "):] for line in lines if line.startswith("Original Line: ")), None)
    sample = f"; row starts {row[:80]!r}" if row is not None else ""
    return " ".join(part for part in (where, why) if part)[:300] + sample
