"""What Lotame holds: the files it received, in the order it received them (R11, R12).

Lotame applies each file to what it already holds (lotame-spherical-inbound-batch.txt, Overview):
- a comprehensive file holds "every segment for each ID in the file": the ID's segments are
  replaced by the file's (IDs not in the file keep theirs);
- a delta file holds the segments "added or removed from the ID since the prior file": `segments`
  are added, `remove` are taken away.
So what Lotame holds is the replay of every delivered file in delivery order, and each new file
(comprehensive or delta) is computed against that, never against the previous partition.

The ledger says which file sets reached Lotame and in which order; a copy of each set's records
and of the state it left at Lotame is kept in the state store (state_store.py: `data/state/` by
default, an object-storage prefix with `DELIVERY_STATE_URL`) under `state/lotame/<partition>/<bundle>.*`,
written before the upload and keyed by the MD5s of the files, so a copy is only ever read for the
exact bytes the ledger says were delivered, on whichever worker reads it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ...ledger import Ledger
from ...core.sql import sql_literal
from ...state_store import state_store
from ...warehouse.buckets import in_range

VENDOR, DELIVERABLE = "lotame", "segmentmembership"
EMPTY_HELD = "SELECT NULL::VARCHAR AS userid, NULL::VARCHAR AS segment WHERE false"


class StateUnknown(Exception):
    """The kept copy of a delivered file set is missing: what Lotame holds cannot be known."""


def state_key(partition: str, name: str) -> str:
    return f"state/{VENDOR}/{partition}/{name}"


def bundle_id(files: list[tuple[str, str]]) -> str:
    """One id for a file set: the MD5 over its (name, MD5) pairs."""
    text = "\n".join(f"{name}:{md5}" for name, md5 in sorted(files))
    return hashlib.md5(text.encode()).hexdigest()


@dataclass(frozen=True)
class Delivered:
    partition: str
    mode: str  # comprehensive | delta
    bundle: str
    position: int  # ledger id of the set's last delivered file: the delivery order

    @property
    def held(self) -> Path:
        """(userid, segment) Lotame holds after this file set: a local copy, fetched when read."""
        return state_store().get(state_key(self.partition, f"{self.bundle}.held.parquet"))

    @property
    def records(self) -> Path:
        """The records sent (the model's columns): a local copy, fetched when read."""
        return state_store().get(state_key(self.partition, f"{self.bundle}.records.parquet"))


def delivered_history(ledger: Ledger) -> list[Delivered]:
    """Every complete file set Lotame received, in the order it received them (the ledger's)."""
    last_id: dict[str, int] = {}
    files: dict[str, dict[str, str]] = {}  # partition -> file name -> MD5 of its latest delivery
    for d in ledger.history(VENDOR, DELIVERABLE, status="delivered"):  # oldest first
        last_id[d.partition_key] = d.id
        files.setdefault(d.partition_key, {})[d.file_name] = d.md5 or ""
    states = ledger.partition_states(VENDOR, DELIVERABLE)
    store = state_store()
    out = []
    for partition, position in sorted(last_id.items(), key=lambda kv: kv[1]):
        if states.get(partition) != "complete":
            continue  # some files sent, no .done: Lotame has not imported it
        bundle = bundle_id(list(files[partition].items()))
        meta = state_key(partition, f"{bundle}.json")
        try:
            mode = json.loads(store.read_bytes(meta))["mode"]
        except FileNotFoundError:
            raise StateUnknown(
                f"lotame {partition}: the ledger says file set {bundle} was delivered but "
                f"its kept copy {store.uri(meta)} is missing, so what Lotame holds cannot be replayed; "
                f"restore state/lotame from backup"
            ) from None
        out.append(Delivered(partition, mode, bundle, position))
    return out


def plan_mode(
    history: list[Delivered], partition: str, wanted: str, full_refresh_days: int
) -> tuple[str, str]:
    """(mode, reason): delta only when Lotame holds a comprehensive file younger than
    `full_refresh_days` (the document's periodic comprehensive file, 30 days by default)."""
    if wanted == "comprehensive":
        return "comprehensive", "configured mode is comprehensive"
    if not history:
        return "comprehensive", "first delivery: always comprehensive"
    last_full = next((h for h in reversed(history) if h.mode == "comprehensive"), None)
    if last_full is None:
        return "comprehensive", "no comprehensive file in the delivered history"
    age = (dt.date.fromisoformat(partition) - dt.date.fromisoformat(last_full.partition)).days
    if age >= full_refresh_days:
        return "comprehensive", (
            f"last comprehensive file ({last_full.partition}) is {age} days old; "
            f"a comprehensive file is due every {full_refresh_days} days"
        )
    return "delta", f"changes since the file delivered for {history[-1].partition}"


def keep(partition: str, bundle: str, mode: str, held: Path, records: Path, base: str | None) -> None:
    """Keep what a file set contains and what it leaves at Lotame, before it is uploaded (the
    .json last: a set is known only once its two tables are stored)."""
    store = state_store()
    for source, suffix in ((held, "held.parquet"), (records, "records.parquet")):
        store.put(state_key(partition, f"{bundle}.{suffix}"), source)
    store.put_bytes(state_key(partition, f"{bundle}.json"), json.dumps({"mode": mode, "base": base}))


# --- Lotame's semantics, in SQL --------------------------------------------------------------
def apply_sql(held_sql: str, records: Path | str, mode: str) -> str:
    """(userid, segment) held after Lotame applies one records file (a Parquet path, or the name
    of a table holding records) to `held_sql`."""
    rec = f"read_parquet({sql_literal(str(records))})" if isinstance(records, Path) else records
    added = f"SELECT userid, unnest(segments).name AS segment FROM {rec}"
    removed = f"SELECT userid, unnest(remove) AS segment FROM {rec} WHERE remove IS NOT NULL"
    if mode == "comprehensive":  # the ID's segments are replaced by the file's
        kept = f"SELECT userid, segment FROM ({held_sql}) WHERE userid NOT IN (SELECT userid FROM {rec})"
        return f"SELECT * FROM ({kept}) UNION ({added}) EXCEPT ({removed})"
    return f"(SELECT userid, segment FROM ({held_sql}) EXCEPT ({removed})) UNION ({added})"


def replay(con: duckdb.DuckDBPyConnection, files: list[tuple[str, Path | str]],
           table: str = "replayed") -> None:
    """Create `table` (userid, segment): the result of applying (mode, records) files in order
    (records: a Parquet path or a relation, as `apply_sql` takes them)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {EMPTY_HELD}")
    for mode, records in files:
        applied = apply_sql(f"SELECT * FROM {table}", records, mode)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _next AS {applied}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM _next")
    con.execute("DROP TABLE IF EXISTS _next")


def compare(con: duckdb.DuckDBPyConnection, table: str, truth_sql: str) -> dict:
    """Missing (in the truth, not held) and extra (held, not in the truth) memberships, with samples."""
    truth = f"SELECT userid, segment FROM ({truth_sql})"
    missing = con.execute(
        f"SELECT count(*), list(userid || ' ' || segment ORDER BY userid, segment)[1:5] "
        f"FROM ({truth} EXCEPT SELECT * FROM {table})"
    ).fetchone()
    extra = con.execute(
        f"SELECT count(*), list(userid || ' ' || segment ORDER BY userid, segment)[1:5] "
        f"FROM (SELECT * FROM {table} EXCEPT {truth})"
    ).fetchone()
    held = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return {
        "missing": missing[0],
        "missing_samples": missing[1] or [],
        "extra": extra[0],
        "extra_samples": extra[1] or [],
        "held": held,
    }


def replay_and_compare(con: duckdb.DuckDBPyConnection, files: list[tuple[str, Path]], truth: Path,
                       ranges: list) -> dict:
    """`replay` then `compare` one userid range at a time (Lotame applies a file ID by ID, so a range
    replays alone): memory follows the range, not the day or the length of the history. Records
    files are sorted by userid, so each range reads only its row groups of each file."""
    found = {"missing": 0, "missing_samples": [], "extra": 0, "extra_samples": [], "held": 0}
    for bounds in ranges:
        where = in_range("userid", bounds)
        replay(con, [(mode, f"(SELECT * FROM read_parquet({sql_literal(str(path))}) WHERE {where})")
                     for mode, path in files])
        truth_sql = f"SELECT * FROM read_parquet({sql_literal(str(truth))}) WHERE {where}"
        part = compare(con, "replayed", truth_sql)
        for name in ("missing", "extra", "held"):
            found[name] += part[name]
        for name in ("missing_samples", "extra_samples"):  # ranges come in userid order
            found[name] = (found[name] + list(part[name]))[:5]
    con.execute("DROP TABLE IF EXISTS replayed")
    return found
