"""The delivery ledger: a durable record of every file published, and the claim on a partition.

Storage is SQLite in WAL mode, on purpose:
- every Dagster step runs in its own process, and a backfill runs many at once; DuckDB allows
  one writing process per file, so a DuckDB ledger would fail those runs on its lock;
- SQLite lets any number of processes write, one short transaction at a time, waiting
  (`busy_timeout`) rather than failing; ledger writes are a few rows per file, so waits are
  milliseconds;
- `BEGIN IMMEDIATE` makes each read-decide-write (next attempt number, partition claim) atomic
  across processes.
In production the file lives on the volume of the run worker; see README "Delivery ledger".

Idempotency rules (used by every vendor's delivery asset through `plan_delivery`):
- a partition already delivered with the same files (names and MD5s) is not sent again;
- a partition delivered with different bytes is refused unless re-delivery is asked for;
- a file name ever delivered for a vendor can be looked up (Idomoo refuses name reuse).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from . import settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    vendor        TEXT NOT NULL,
    deliverable   TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    remote_uri    TEXT,
    bytes         INTEGER,
    md5           TEXT,
    rows          INTEGER,
    attempt       INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('publishing', 'delivered', 'failed', 'skipped')),
    run_id        TEXT,
    error         TEXT,
    started_at    TEXT NOT NULL,
    finished_at   TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_partition ON deliveries (vendor, deliverable, partition_key);
CREATE INDEX IF NOT EXISTS deliveries_name ON deliveries (vendor, file_name);
CREATE TABLE IF NOT EXISTS claims (
    vendor        TEXT NOT NULL,
    deliverable   TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    holder        TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    PRIMARY KEY (vendor, deliverable, partition_key)
);
-- whether the partition's whole file set is at the vendor ('complete') or a delivery of it began
-- and has not finished ('delivering': in progress, failed part-way, or its process was killed)
CREATE TABLE IF NOT EXISTS partitions (
    vendor        TEXT NOT NULL,
    deliverable   TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    state         TEXT NOT NULL,
    files         INTEGER NOT NULL,
    run_id        TEXT,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (vendor, deliverable, partition_key)
);
-- chained deliverables (each file builds on the one before, e.g. Lotame deltas): which partitions
-- a run has started to build, so a later partition waits for an earlier one still in the chain
CREATE TABLE IF NOT EXISTS chain_claims (
    vendor        TEXT NOT NULL,
    deliverable   TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    holder        TEXT NOT NULL,
    claimed_at    TEXT NOT NULL,
    PRIMARY KEY (vendor, deliverable, partition_key)
);
"""


class LedgerError(Exception):
    pass


class AlreadyDeliveredDifferently(LedgerError):
    """The partition was delivered with other bytes; re-delivery must be asked for explicitly."""


class PartitionBusy(LedgerError):
    """Another run holds the claim on this partition's delivery."""


def _holder_gone(holder: str) -> bool:
    """True when the claim's holder ("host:pid") was a process on this host that no longer exists
    (a run process killed mid-delivery). Holders on other hosts wait for the lease to expire."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        pass
    return False


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Delivery:
    id: int
    vendor: str
    deliverable: str
    partition_key: str
    file_name: str
    remote_uri: str | None
    bytes: int | None
    md5: str | None
    rows: int | None
    attempt: int
    status: str
    run_id: str | None
    error: str | None
    started_at: str
    finished_at: str | None


@dataclass(frozen=True)
class PlannedFile:
    name: str
    md5: str
    bytes: int
    rows: int | None = None


@dataclass(frozen=True)
class DeliveryPlan:
    """What to do with a partition's files: `send` lists those still to publish."""

    action: str  # "send", "skip" (already delivered, same bytes), "redeliver"
    send: tuple[PlannedFile, ...]
    already: tuple[Delivery, ...]
    reason: str


class Ledger:
    def __init__(self, path: Path | str | None = None, timeout_s: float = 60.0):
        self.path = Path(path) if path else settings.ledger_path()
        self.timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            yield con
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    # --- claims: one delivering run per partition -------------------------------------------
    def claim(self, vendor: str, deliverable: str, partition_key: str, run_id: str,
              lease: dt.timedelta = dt.timedelta(hours=2)) -> None:
        """Take the partition's delivery claim, or raise PartitionBusy naming the holder.

        A claim left by a run killed mid-delivery is taken over at once when its process is gone
        (same host), else when its lease expires; the files that run was still publishing are
        then recorded as failed, so the ledger never shows a transfer as in flight forever.
        """
        holder = f"{socket.gethostname()}:{os.getpid()}"
        now = dt.datetime.now(dt.timezone.utc)
        with self._write() as con:
            row = con.execute(
                "SELECT run_id, holder, expires_at FROM claims WHERE vendor=? AND deliverable=? AND partition_key=?",
                (vendor, deliverable, partition_key),
            ).fetchone()
            gone = bool(row) and _holder_gone(row["holder"])
            if row and row["run_id"] != run_id and dt.datetime.fromisoformat(row["expires_at"]) > now and not gone:
                raise PartitionBusy(
                    f"{vendor}/{deliverable} partition {partition_key} is being delivered by run "
                    f"{row['run_id']} ({row['holder']}) until {row['expires_at']}; not delivering twice at once"
                )
            if row and (row["run_id"] != run_id or row["holder"] != holder):
                why = "its process is gone" if gone else "its claim expired"
                con.execute(
                    "UPDATE deliveries SET status='failed', error=?, finished_at=? WHERE vendor=? AND deliverable=? "
                    "AND partition_key=? AND run_id=? AND status='publishing'",
                    (f"abandoned: run {row['run_id']} ({row['holder']}) stopped mid-transfer ({why})", _now(),
                     vendor, deliverable, partition_key, row["run_id"]),
                )
            con.execute(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?)",
                (vendor, deliverable, partition_key, run_id, holder, (now + lease).isoformat()),
            )

    def release(self, vendor: str, deliverable: str, partition_key: str, run_id: str) -> None:
        with self._write() as con:
            con.execute(
                "DELETE FROM claims WHERE vendor=? AND deliverable=? AND partition_key=? AND run_id=?",
                (vendor, deliverable, partition_key, run_id),
            )

    @contextmanager
    def claimed(self, vendor: str, deliverable: str, partition_key: str, run_id: str) -> Iterator[None]:
        self.claim(vendor, deliverable, partition_key, run_id)
        try:
            yield
        finally:
            self.release(vendor, deliverable, partition_key, run_id)

    def mark_partition(self, vendor: str, deliverable: str, partition_key: str, state: str, *, files: int,
                       run_id: str | None = None) -> None:
        """Record that the partition's delivery began ('delivering') or its whole file set is at
        the vendor ('complete')."""
        if state not in ("delivering", "complete"):
            raise ValueError(state)
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO partitions VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (vendor, deliverable, partition_key, state, files, run_id, _now()))

    def partition_state(self, vendor: str, deliverable: str, partition_key: str) -> str | None:
        """'complete', 'delivering' (begun, not finished), or None (never attempted)."""
        with self._connect() as con:
            row = con.execute("SELECT state FROM partitions WHERE vendor=? AND deliverable=? AND partition_key=?",
                              (vendor, deliverable, partition_key)).fetchone()
        return row["state"] if row else None

    # --- recording attempts ------------------------------------------------------------------
    def begin(self, vendor: str, deliverable: str, partition_key: str, file_name: str, *,
              bytes: int | None = None, md5: str | None = None, rows: int | None = None,
              remote_uri: str | None = None, run_id: str | None = None) -> int:
        """Record that publishing a file starts; returns the attempt's id."""
        with self._write() as con:
            attempt = con.execute(
                "SELECT coalesce(max(attempt), 0) + 1 FROM deliveries WHERE vendor=? AND deliverable=? "
                "AND partition_key=? AND file_name=?",
                (vendor, deliverable, partition_key, file_name),
            ).fetchone()[0]
            cur = con.execute(
                "INSERT INTO deliveries (vendor, deliverable, partition_key, file_name, remote_uri, bytes, md5, rows,"
                " attempt, status, run_id, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'publishing', ?, ?)",
                (vendor, deliverable, partition_key, file_name, remote_uri, bytes, md5, rows, attempt, run_id, _now()),
            )
            return int(cur.lastrowid)

    def finish(self, attempt_id: int, status: str, *, error: str | None = None, remote_uri: str | None = None) -> None:
        if status not in ("delivered", "failed", "skipped"):
            raise ValueError(status)
        with self._write() as con:
            con.execute(
                "UPDATE deliveries SET status=?, error=?, remote_uri=coalesce(?, remote_uri), finished_at=? WHERE id=?",
                (status, (error or None) and error[:2000], remote_uri, _now(), attempt_id),
            )

    # --- reading -----------------------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence) -> list[Delivery]:
        with self._connect() as con:
            return [Delivery(**dict(r)) for r in con.execute(sql, params).fetchall()]

    def delivered(self, vendor: str, deliverable: str, partition_key: str) -> list[Delivery]:
        """The latest delivered record of each file of the partition."""
        return self._rows(
            "SELECT * FROM deliveries d WHERE vendor=? AND deliverable=? AND partition_key=? AND status='delivered' "
            "AND id = (SELECT max(id) FROM deliveries e WHERE e.vendor=d.vendor AND e.deliverable=d.deliverable "
            "AND e.partition_key=d.partition_key AND e.file_name=d.file_name AND e.status='delivered') ORDER BY file_name",
            (vendor, deliverable, partition_key),
        )

    def history(self, vendor: str, deliverable: str | None = None, status: str | None = None) -> list[Delivery]:
        sql, params = "SELECT * FROM deliveries WHERE vendor=?", [vendor]
        if deliverable:
            sql, params = sql + " AND deliverable=?", params + [deliverable]
        if status:
            sql, params = sql + " AND status=?", params + [status]
        return self._rows(sql + " ORDER BY id", params)

    def find_name(self, vendor: str, file_name: str) -> list[Delivery]:
        """Every attempt, any deliverable, that used this file name for the vendor."""
        return self._rows("SELECT * FROM deliveries WHERE vendor=? AND file_name=? ORDER BY id", (vendor, file_name))

    def attempts(self, vendor: str, deliverable: str, partition_key: str) -> list[Delivery]:
        return self._rows(
            "SELECT * FROM deliveries WHERE vendor=? AND deliverable=? AND partition_key=? ORDER BY id",
            (vendor, deliverable, partition_key),
        )

    # --- the idempotency decision ---------------------------------------------------------
    def plan_delivery(self, vendor: str, deliverable: str, partition_key: str,
                      files: Sequence[PlannedFile], *, redeliver: bool = False) -> DeliveryPlan:
        done = {d.file_name: d for d in self.delivered(vendor, deliverable, partition_key)}
        if not done:
            return DeliveryPlan("send", tuple(files), (), "not delivered before")
        same = all(f.name in done and done[f.name].md5 == f.md5 for f in files) and len(done) == len(files)
        if same:
            return DeliveryPlan("skip", (), tuple(done.values()), "already delivered with the same bytes")
        missing = [f for f in files if f.name not in done]
        changed = [f for f in files if f.name in done and done[f.name].md5 != f.md5]
        if not changed and set(done) <= {f.name for f in files}:
            # an earlier attempt stopped part-way: finish it with the files not yet sent
            return DeliveryPlan("send", tuple(missing), tuple(done.values()),
                                f"completing an interrupted delivery ({len(missing)} of {len(files)} files left)")
        if not redeliver:
            raise AlreadyDeliveredDifferently(
                f"{vendor}/{deliverable} partition {partition_key} was already delivered "
                f"({len(done)} files, e.g. {sorted(done)[0]}) and the new files differ "
                f"({len(changed)} changed, {len(missing)} new). Re-run with redeliver=True to send them again."
            )
        return DeliveryPlan("redeliver", tuple(files), tuple(done.values()), "re-delivery requested")

    # --- chains: partitions that build on each other deliver in partition order ---------------
    def chain_claim(self, vendor: str, deliverable: str, partition_key: str, run_id: str,
                    after: str | None) -> list[dict]:
        """Enter the partition in its chain and return, in the same transaction, the earlier
        partitions (after `after`, the last delivered one) still in the chain and not delivered:
        the ones this partition must wait for. Each is {partition_key, run_id, holder, claimed_at}."""
        holder = f"{socket.gethostname()}:{os.getpid()}"
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO chain_claims VALUES (?, ?, ?, ?, ?, ?)",
                        (vendor, deliverable, partition_key, run_id, holder, _now()))
            return self._chain_waiting(con, vendor, deliverable, partition_key, after)

    def chain_waiting(self, vendor: str, deliverable: str, partition_key: str,
                      after: str | None) -> list[dict]:
        """The earlier partitions in the chain (after `after`) whose delivery is not complete."""
        with self._connect() as con:
            return self._chain_waiting(con, vendor, deliverable, partition_key, after)

    @staticmethod
    def _chain_waiting(con, vendor, deliverable, partition_key, after) -> list[dict]:
        rows = con.execute(
            "SELECT c.partition_key, c.run_id, c.holder, c.claimed_at FROM chain_claims c "
            "LEFT JOIN partitions p USING (vendor, deliverable, partition_key) "
            "WHERE c.vendor=? AND c.deliverable=? AND c.partition_key<? AND c.partition_key>? "
            "AND coalesce(p.state, '') <> 'complete' ORDER BY c.partition_key",
            (vendor, deliverable, partition_key, after or "")).fetchall()
        return [dict(r) for r in rows]

    def chain_drop(self, vendor: str, deliverable: str, partition_key: str) -> bool:
        """Take a partition out of its chain (an operator decides it will never be delivered: the
        next partition's file then covers its changes). True when it was in the chain."""
        with self._write() as con:
            return con.execute(
                "DELETE FROM chain_claims WHERE vendor=? AND deliverable=? AND partition_key=?",
                (vendor, deliverable, partition_key)).rowcount == 1

    def partition_states(self, vendor: str, deliverable: str) -> dict[str, str]:
        """partition_key -> 'complete' | 'delivering' for every partition of a deliverable."""
        with self._connect() as con:
            rows = con.execute("SELECT partition_key, state FROM partitions WHERE vendor=? AND deliverable=?",
                               (vendor, deliverable)).fetchall()
        return {r["partition_key"]: r["state"] for r in rows}
