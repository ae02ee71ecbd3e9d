"""The delivery ledger: a durable record of every file published, and the claim on a partition.

Storage (core/db.py) is SQLite in WAL mode by default, or PostgreSQL when `DELIVERY_LEDGER_URL`
is set (several nodes deliver; see docs/operating.md "Several nodes"). The decisions below are
written once, for both:
- every Dagster step runs in its own process, and a backfill runs many at once; DuckDB allows
  one writing process per file, so a DuckDB ledger would fail those runs on its lock;
- SQLite lets any number of processes of one machine write, one short transaction at a time,
  waiting (`busy_timeout`) rather than failing; PostgreSQL lets any number of nodes do the same;
- each read-decide-write (next attempt number, partition claim, chain entry) is one transaction
  holding the deliverable's lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock).

Claims are leases (`DELIVERY_LEASE_SECONDS`, default 120): the holding process renews its lease
while it delivers, so a claim whose holder died anywhere lapses after one lease; a holder on this
node whose process is gone is taken over at once. A holder that lost its lease (its node stalled
past the lease and another run took over) is stopped before it starts its next file.

Idempotency rules (used by every vendor's delivery asset through `plan_delivery`):
- a partition already delivered with the same files (names and MD5s) is not sent again;
- nor is one whose files carry the same content compressed differently (a gzip written with another
  deflate library or level): a file's content MD5 (before compression) is recorded with its MD5;
  for files delivered before content MD5s were recorded, the new content is compressed again the
  way it was then (zlib, same level and blocks: formats/compress.py `zlib_md5`) and compared;
- a partition delivered with different content is refused unless re-delivery is asked for;
- a file name ever delivered for a vendor can be looked up (Idomoo refuses name reuse).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from . import settings
from .core import db

log = logging.getLogger(__name__)

# schema versions, in order (core/db.py `migrate`); {id} and {real} are each engine's types
SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id            {id},
    vendor        TEXT NOT NULL,
    deliverable   TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    remote_uri    TEXT,
    bytes         BIGINT,
    md5           TEXT,
    rows          BIGINT,
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
    files         BIGINT NOT NULL,
    run_id        TEXT,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (vendor, deliverable, partition_key)
);
-- which rows a file carries, as a range over the deliverable's sort key: (after, through], recorded
-- before the file's first upload attempt so a retry re-sends exactly that range under that name
CREATE TABLE IF NOT EXISTS file_contents (
    vendor        TEXT NOT NULL,
    deliverable   TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    after_key     TEXT,
    through_key   TEXT NOT NULL,
    rows          BIGINT NOT NULL,
    recorded_at   TEXT NOT NULL,
    PRIMARY KEY (vendor, deliverable, file_name)
);
-- a partition with nothing to send, recorded as delivered-empty so no deadline alert calls it missed
CREATE TABLE IF NOT EXISTS empty_partitions (
    vendor        TEXT NOT NULL,
    deliverable   TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    reason        TEXT NOT NULL,
    run_id        TEXT,
    recorded_at   TEXT NOT NULL,
    PRIMARY KEY (vendor, deliverable, partition_key)
);
-- a note on one delivery attempt, e.g. "accepted earlier" for a 409 on a retry of our own upload
CREATE TABLE IF NOT EXISTS delivery_notes (
    delivery_id   BIGINT PRIMARY KEY,
    note          TEXT NOT NULL
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

# version 2: each file's content MD5 (of its bytes before compression; NULL for rows written before)
CONTENT_MD5 = """
ALTER TABLE deliveries ADD COLUMN content_md5 TEXT;
"""

# version 3: file names a partition took before uploading them, for vendors whose names are made rather
# than derived from the partition (Idomoo's time of day): one partition per name, vendor-wide
RESERVED_NAMES = """
CREATE TABLE IF NOT EXISTS reserved_names (
    vendor        TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    reserved_at   TEXT NOT NULL,
    PRIMARY KEY (vendor, file_name)
);
"""


PARTITION = ("vendor", "deliverable", "partition_key")
SAME_BYTES = "already delivered with the same bytes"  # a skip's reason when every file matched byte for byte
CLAIM_COLUMNS = (*PARTITION, "run_id", "holder", "expires_at")


class LedgerError(Exception):
    pass


class AlreadyDeliveredDifferently(LedgerError):
    """The partition was delivered with other content; re-delivery must be asked for explicitly."""


class PartitionBusy(LedgerError):
    """Another run holds the claim on this partition's delivery."""


def node_name() -> str:
    """This machine's name in claim holders ("node:pid"): `DELIVERY_NODE_NAME`, else the host name
    (on Kubernetes the pod's name). It must differ between machines sharing a ledger."""
    return os.environ.get("DELIVERY_NODE_NAME") or socket.gethostname()


def lease_duration() -> dt.timedelta:
    """`DELIVERY_LEASE_SECONDS` (default 120): how long a claim outlives its last renewal."""
    return dt.timedelta(seconds=float(os.environ.get("DELIVERY_LEASE_SECONDS", "120")))


def _holder() -> str:
    return f"{node_name()}:{os.getpid()}"


def _holder_gone(holder: str) -> bool:
    """True when the claim's holder ("node:pid") was a process on this node that no longer exists
    (a run process killed mid-delivery). Holders on other nodes wait for the lease to expire: a pid
    means nothing across machines."""
    host, _, pid = holder.rpartition(":")
    if host != node_name() or not pid.isdigit():
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


def _lock(vendor: str, deliverable: str) -> str:
    """The lock a deliverable's decisions take (PostgreSQL; SQLite serialises all writers anyway)."""
    return f"ledger:{vendor}/{deliverable}"


class _Renewal(threading.Thread):
    """Renews one claim's lease every third of the lease while its run holds it."""

    def __init__(self, ledger: "Ledger", key: tuple[str, str, str], run_id: str, holder: str,
                 lease: dt.timedelta):
        super().__init__(daemon=True, name=f"lease {'/'.join(key)}")
        self.ledger, self.key, self.run_id, self.holder, self.lease = ledger, key, run_id, holder, lease
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        try:
            self._renew()
        finally:
            self.ledger.store.close_thread()  # one connection per renewal thread, closed with it

    def _renew(self) -> None:
        while not self.stopped.wait(max(self.lease.total_seconds() / 3, 0.2)):
            try:
                with self.ledger._write(_lock(*self.key[:2])) as con:
                    renewed = con.execute(
                        "UPDATE claims SET expires_at=? WHERE vendor=? AND deliverable=? AND partition_key=? "
                        "AND run_id=? AND holder=?",
                        ((dt.datetime.now(dt.timezone.utc) + self.lease).isoformat(), *self.key, self.run_id,
                         self.holder)).rowcount
            except Exception as exc:  # the store is unreachable for now: try again at the next beat
                log.warning(f"could not renew the claim on {'/'.join(self.key)}: {exc}")
                continue
            if not renewed:
                self.lost = True
                log.error(f"run {self.run_id} lost its claim on {'/'.join(self.key)}: another run took it over")
                return


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
    content_md5: str | None = None  # MD5 before compression; None for rows written before it was recorded


@dataclass(frozen=True)
class PlannedFile:
    name: str
    md5: str
    bytes: int
    rows: int | None = None
    content_md5: str | None = None  # MD5 of the content before compression, when known
    # the MD5 this content had when compressed the way files were before content MD5s were recorded
    # (delivery.py: zlib at the same level); called only for such ledger rows
    legacy_md5: Callable[[], str | None] | None = field(default=None, compare=False, repr=False)
    compression: str | None = None  # how the file is compressed now, for the log ("gzip -6 (zlib-ng)")


@dataclass(frozen=True)
class DeliveryPlan:
    """What to do with a partition's files: `send` lists those still to publish."""

    action: str  # "send", "skip" (already delivered, same bytes), "redeliver"
    send: tuple[PlannedFile, ...]
    already: tuple[Delivery, ...]
    reason: str


@dataclass(frozen=True)
class FileContents:
    """The rows one file carries: sort keys in (after_key, through_key]; after_key None = from the start."""

    partition_key: str
    file_name: str
    after_key: str | None
    through_key: str
    rows: int


class Ledger:
    """`path`: a SQLite file, or a `postgresql://` URL; by default `DELIVERY_LEDGER_URL` when set,
    else `DELIVERY_LEDGER_PATH` (data/ledger.sqlite)."""

    def __init__(self, path: Path | str | None = None, timeout_s: float = 60.0):
        # synchronous=FULL: a delivered file's record survives a power cut
        self.store = db.open_store(path, settings.ledger_path(), timeout_s=timeout_s, synchronous="FULL")
        # receipts and drift profiles are kept beside a SQLite ledger, in the data folder otherwise
        self.path = self.store.path if isinstance(self.store, db.SQLiteStore) else settings.ledger_path()
        self.timeout_s = timeout_s
        self._renewals: dict[tuple[str, str, str], _Renewal] = {}
        self.store.migrate("ledger", [SCHEMA, CONTENT_MD5, RESERVED_NAMES])

    def describe(self) -> str:
        """Where the ledger is, safe to show (a URL's password is masked)."""
        return self.store.describe()

    @contextmanager
    def _connect(self) -> Iterator:
        with self.store.connect() as con:
            yield con

    @contextmanager
    def _write(self, lock: str | None = None) -> Iterator:
        with self.store.transaction(lock) as con:
            yield con

    # --- claims: one delivering run per partition -------------------------------------------
    def claim(self, vendor: str, deliverable: str, partition_key: str, run_id: str,
              lease: dt.timedelta | None = None) -> list[Delivery]:
        """Take the partition's delivery claim, or raise PartitionBusy naming the holder.

        The claim is a lease (`lease`, default `DELIVERY_LEASE_SECONDS`) renewed by this process
        until `release`. A claim left by a run killed mid-delivery is taken over at once when its
        process is gone (same node), else when its lease expires; the files that run was still
        publishing are then recorded as failed, so the ledger never shows a transfer as in flight
        forever. Returns those abandoned attempts: their temporary files may still sit at the vendor.
        """
        holder, lease = _holder(), lease or lease_duration()
        now = dt.datetime.now(dt.timezone.utc)
        with self._write(_lock(vendor, deliverable)) as con:
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
            abandoned: list[Delivery] = []
            if row and (row["run_id"] != run_id or row["holder"] != holder):
                why = "its process is gone" if gone else "its claim expired"
                abandoned = [Delivery(**dict(r)) for r in con.execute(
                    "SELECT * FROM deliveries WHERE vendor=? AND deliverable=? AND partition_key=? AND run_id=? "
                    "AND status='publishing'", (vendor, deliverable, partition_key, row["run_id"])).fetchall()]
                con.execute(
                    "UPDATE deliveries SET status='failed', error=?, finished_at=? WHERE vendor=? AND deliverable=? "
                    "AND partition_key=? AND run_id=? AND status='publishing'",
                    (f"abandoned: run {row['run_id']} ({row['holder']}) stopped mid-transfer ({why})", _now(),
                     vendor, deliverable, partition_key, row["run_id"]),
                )
            con.execute(
                db.upsert("claims", CLAIM_COLUMNS, PARTITION),
                (vendor, deliverable, partition_key, run_id, holder, (now + lease).isoformat()),
            )
        key = (vendor, deliverable, partition_key)
        self._stop_renewal(key)
        self._renewals[key] = renewal = _Renewal(self, key, run_id, holder, lease)
        renewal.start()
        return abandoned

    def _stop_renewal(self, key: tuple[str, str, str]) -> None:
        renewal = self._renewals.pop(key, None)
        if renewal is not None:
            renewal.stopped.set()

    def release(self, vendor: str, deliverable: str, partition_key: str, run_id: str) -> None:
        self._stop_renewal((vendor, deliverable, partition_key))
        with self._write(_lock(vendor, deliverable)) as con:
            con.execute(
                "DELETE FROM claims WHERE vendor=? AND deliverable=? AND partition_key=? AND run_id=?",
                (vendor, deliverable, partition_key, run_id),
            )

    @contextmanager
    def claimed(self, vendor: str, deliverable: str, partition_key: str, run_id: str) -> Iterator[list[Delivery]]:
        abandoned = self.claim(vendor, deliverable, partition_key, run_id)
        try:
            yield abandoned
        finally:
            self.release(vendor, deliverable, partition_key, run_id)

    def mark_partition(self, vendor: str, deliverable: str, partition_key: str, state: str, *, files: int,
                       run_id: str | None = None) -> None:
        """Record that the partition's delivery began ('delivering') or its whole file set is at
        the vendor ('complete')."""
        if state not in ("delivering", "complete"):
            raise ValueError(state)
        with self._write(_lock(vendor, deliverable)) as con:
            con.execute(db.upsert("partitions", ("vendor", "deliverable", "partition_key", "state", "files", "run_id",
                                                 "updated_at"), PARTITION),
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
              remote_uri: str | None = None, run_id: str | None = None, content_md5: str | None = None) -> int:
        """Record that publishing a file starts; returns the attempt's id. Refused (PartitionBusy) when
        this ledger held the partition's claim for the run and another run has taken it over."""
        with self._write(_lock(vendor, deliverable)) as con:
            renewal = self._renewals.get((vendor, deliverable, partition_key))
            if renewal is not None and run_id == renewal.run_id:
                row = con.execute("SELECT run_id, holder FROM claims WHERE vendor=? AND deliverable=? "
                                  "AND partition_key=?", (vendor, deliverable, partition_key)).fetchone()
                if row is None or (row["run_id"], row["holder"]) != (run_id, renewal.holder):
                    taker = f"run {row['run_id']} ({row['holder']})" if row else "nobody"
                    raise PartitionBusy(f"{vendor}/{deliverable} partition {partition_key}: run {run_id} lost its "
                                        f"claim (its lease lapsed; now held by {taker}); not sending {file_name}")
            attempt = con.execute(
                "SELECT coalesce(max(attempt), 0) + 1 FROM deliveries WHERE vendor=? AND deliverable=? "
                "AND partition_key=? AND file_name=?",
                (vendor, deliverable, partition_key, file_name),
            ).fetchone()[0]
            cur = con.execute(
                "INSERT INTO deliveries (vendor, deliverable, partition_key, file_name, remote_uri, bytes, md5, rows,"
                " attempt, status, run_id, started_at, content_md5) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'publishing', ?, ?,"
                " ?) RETURNING id",
                (vendor, deliverable, partition_key, file_name, remote_uri, bytes, md5, rows, attempt, run_id, _now(),
                 content_md5),
            )
            return int(cur.fetchone()[0])

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
    def _matches(self, done: Delivery, f: PlannedFile) -> str | None:
        """'bytes' when `f` is the delivered file byte for byte, 'content' when it carries the same
        content compressed differently, None when its content differs (or cannot be shown equal)."""
        if done.md5 == f.md5:
            return "bytes"
        if done.content_md5 is not None:
            return "content" if f.content_md5 is not None and f.content_md5 == done.content_md5 else None
        # a row from before content MD5s: compress the new content the way it was then and compare
        if f.legacy_md5 is not None and f.content_md5 is not None and f.legacy_md5() == done.md5:
            with self._write(_lock(done.vendor, done.deliverable)) as con:  # known from now on
                con.execute("UPDATE deliveries SET content_md5=? WHERE id=? AND content_md5 IS NULL",
                            (f.content_md5, done.id))
            return "content"
        return None

    @staticmethod
    def _recompressed(files: Sequence[PlannedFile], done: dict[str, Delivery], how: dict[str, str | None]) -> str:
        """What the log says when files were found delivered with the same content, other bytes."""
        names = [f for f in files if how.get(f.name) == "content"]
        when = sorted({(done[f.name].finished_at or done[f.name].started_at)[:19] for f in names})
        compressed = sorted({f.compression for f in names if f.compression and not f.compression.startswith("the ")})
        return (f"same content as delivered on {', '.join(when)}"
                + (f", compressed with {', '.join(compressed)} now" if compressed else ", compressed differently now")
                + f" ({len(names)} of {len(files)} files with other bytes)")

    def plan_delivery(self, vendor: str, deliverable: str, partition_key: str,
                      files: Sequence[PlannedFile], *, redeliver: bool = False) -> DeliveryPlan:
        done = {d.file_name: d for d in self.delivered(vendor, deliverable, partition_key)}
        if not done:
            return DeliveryPlan("send", tuple(files), (), "not delivered before")
        how = {f.name: self._matches(done[f.name], f) for f in files if f.name in done}
        if all(how.get(f.name) for f in files) and len(done) == len(files):
            if all(v == "bytes" for v in how.values()):
                return DeliveryPlan("skip", (), tuple(done.values()), SAME_BYTES)
            return DeliveryPlan("skip", (), tuple(done.values()),
                                f"already delivered: {self._recompressed(files, done, how)}: nothing re-sent")
        missing = [f for f in files if f.name not in done]
        changed = [f for f in files if f.name in done and not how[f.name]]
        if not changed and set(done) <= {f.name for f in files}:
            # an earlier attempt stopped part-way: finish it with the files not yet sent
            again = (f"; {self._recompressed(files, done, how)}: not re-sent"
                     if any(v == "content" for v in how.values()) else "")
            return DeliveryPlan("send", tuple(missing), tuple(done.values()),
                                f"completing an interrupted delivery ({len(missing)} of {len(files)} files left{again})")
        if not redeliver:
            raise AlreadyDeliveredDifferently(
                f"{vendor}/{deliverable} partition {partition_key} was already delivered "
                f"({len(done)} files, e.g. {sorted(done)[0]}) and the new files differ "
                f"({len(changed)} changed, {len(missing)} new). Re-run with redeliver=True to send them again."
            )
        return DeliveryPlan("redeliver", tuple(files), tuple(done.values()), "re-delivery requested")

    # --- names taken before upload ------------------------------------------------------------
    def reserve_name(self, vendor: str, partition_key: str, name: str) -> bool:
        """Take `name` for the partition before its file is built: True when the name is the partition's (taken
        now, or before by the same partition), False when another partition holds it. Runs of two partitions
        building in the same second (a backfill) would otherwise both choose the name no delivery used yet,
        and the vendor would be sent it twice."""
        with self._write(_lock(vendor, "names")) as con:
            row = con.execute("SELECT partition_key FROM reserved_names WHERE vendor=? AND file_name=?",
                              (vendor, name)).fetchone()
            if row is not None:
                return row["partition_key"] == partition_key
            con.execute("INSERT INTO reserved_names (vendor, file_name, partition_key, reserved_at) VALUES (?, ?, ?, ?)",
                        (vendor, name, partition_key, _now()))
            return True

    # --- file contents (top-ups), empty partitions, notes ----------------------------------
    def record_contents(self, vendor: str, deliverable: str, contents: FileContents) -> None:
        """Record which rows a file carries before its first upload. A name keeps its contents
        forever: recording other contents for a known name raises LedgerError."""
        with self._write(_lock(vendor, deliverable)) as con:
            row = con.execute("SELECT partition_key, after_key, through_key, rows FROM file_contents "
                              "WHERE vendor=? AND deliverable=? AND file_name=?",
                              (vendor, deliverable, contents.file_name)).fetchone()
            known = (contents.partition_key, contents.after_key, contents.through_key, contents.rows)
            if row is None:
                con.execute("INSERT INTO file_contents (vendor, deliverable, partition_key, file_name, after_key, "
                            "through_key, rows, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (vendor, deliverable, contents.partition_key, contents.file_name,
                             contents.after_key, contents.through_key, contents.rows, _now()))
            elif tuple(row) != known:
                raise LedgerError(f"{vendor}/{deliverable} {contents.file_name} was recorded carrying rows "
                                  f"({row['after_key']}, {row['through_key']}] ({row['rows']} rows); "
                                  "refusing to "
                                  f"reuse the name for ({contents.after_key}, {contents.through_key}] "
                                  f"({contents.rows} rows)")

    def contents(self, vendor: str, deliverable: str, partition_key: str) -> list[FileContents]:
        """Every file of the partition whose contents were recorded (attempted or delivered), by name."""
        with self._connect() as con:
            rows = con.execute("SELECT partition_key, file_name, after_key, through_key, rows "
                               "FROM file_contents WHERE vendor=? AND deliverable=? AND partition_key=? "
                               "ORDER BY file_name",
                               (vendor, deliverable, partition_key)).fetchall()
        return [FileContents(**dict(r)) for r in rows]

    def record_empty(self, vendor: str, deliverable: str, partition_key: str, *, reason: str,
                     run_id: str | None = None) -> None:
        """A partition with nothing to send is delivered-empty: its state is 'complete' with 0 files."""
        with self._write(_lock(vendor, deliverable)) as con:
            con.execute(db.upsert("empty_partitions", ("vendor", "deliverable", "partition_key", "reason", "run_id",
                                                       "recorded_at"), PARTITION),
                        (vendor, deliverable, partition_key, reason, run_id, _now()))
        self.mark_partition(vendor, deliverable, partition_key, "complete", files=0, run_id=run_id)

    def empty_reason(self, vendor: str, deliverable: str, partition_key: str) -> str | None:
        """Why the partition was recorded delivered-empty, or None."""
        with self._connect() as con:
            row = con.execute("SELECT reason FROM empty_partitions WHERE vendor=? AND deliverable=? "
                              "AND partition_key=?", (vendor, deliverable, partition_key)).fetchone()
        return row["reason"] if row else None

    def clear_empty(self, vendor: str, deliverable: str, partition_key: str) -> None:
        """The partition had something to send after all (late events): it is no longer delivered-empty."""
        with self._write(_lock(vendor, deliverable)) as con:
            con.execute("DELETE FROM empty_partitions WHERE vendor=? AND deliverable=? AND partition_key=?",
                        (vendor, deliverable, partition_key))

    def note(self, delivery_id: int, text: str) -> None:
        with self._write() as con:
            con.execute(db.upsert("delivery_notes", ("delivery_id", "note"), ("delivery_id",)),
                        (delivery_id, text[:2000]))

    def notes(self, vendor: str) -> dict[int, str]:
        """Notes on the vendor's delivery attempts, by attempt id."""
        with self._connect() as con:
            rows = con.execute("SELECT n.delivery_id, n.note FROM delivery_notes n JOIN deliveries d "
                               "ON d.id = n.delivery_id WHERE d.vendor=?", (vendor,)).fetchall()
        return {r[0]: r[1] for r in rows}

    def plan_append(self, vendor: str, deliverable: str, partition_key: str,
                    files: Sequence[PlannedFile]) -> DeliveryPlan:
        """Plan for files added to a partition that may already hold others (top-ups): send the
        given files not yet delivered; the same name delivered with other bytes is refused."""
        done = {d.file_name: d for d in self.delivered(vendor, deliverable, partition_key)}
        changed = [f.name for f in files if f.name in done and not self._matches(done[f.name], f)]
        if changed:
            raise AlreadyDeliveredDifferently(
                f"{vendor}/{deliverable} partition {partition_key}: {', '.join(changed)} already "
                "delivered with other bytes; a file name is never reused for other contents")
        send = tuple(f for f in files if f.name not in done)
        already = tuple(done[f.name] for f in files if f.name in done)
        if not send:
            return DeliveryPlan("skip", (), already, SAME_BYTES)
        return DeliveryPlan("send", send, already, f"{len(send)} new file(s) for the partition")

    def own_earlier_attempt(self, vendor: str, deliverable: str, partition_key: str, file_name: str,
                            md5: str, before_id: int) -> Delivery | None:
        """An earlier attempt of ours that published these very bytes under this name and may have
        reached the vendor (its answer lost: a 500, a timeout, a dropped connection, a killed run)."""
        rows = self._rows("SELECT * FROM deliveries WHERE vendor=? AND deliverable=? AND partition_key=? "
                          "AND file_name=? AND md5=? AND id < ? ORDER BY id DESC LIMIT 1",
                          (vendor, deliverable, partition_key, file_name, md5, before_id))
        return rows[0] if rows else None
    # --- chains: partitions that build on each other deliver in partition order ---------------
    def chain_claim(self, vendor: str, deliverable: str, partition_key: str, run_id: str,
                    after: str | None) -> list[dict]:
        """Enter the partition in its chain and return, in the same transaction, the earlier
        partitions (after `after`, the last delivered one) still in the chain and not delivered:
        the ones this partition must wait for. Each is {partition_key, run_id, holder, claimed_at}."""
        holder = _holder()
        with self._write(_lock(vendor, deliverable)) as con:
            con.execute(db.upsert("chain_claims", ("vendor", "deliverable", "partition_key", "run_id", "holder",
                                                   "claimed_at"), PARTITION),
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
        with self._write(_lock(vendor, deliverable)) as con:
            return con.execute(
                "DELETE FROM chain_claims WHERE vendor=? AND deliverable=? AND partition_key=?",
                (vendor, deliverable, partition_key)).rowcount == 1

    def partition_states(self, vendor: str, deliverable: str) -> dict[str, str]:
        """partition_key -> 'complete' | 'delivering' for every partition of a deliverable."""
        with self._connect() as con:
            rows = con.execute("SELECT partition_key, state FROM partitions WHERE vendor=? AND deliverable=?",
                               (vendor, deliverable)).fetchall()
        return {r["partition_key"]: r["state"] for r in rows}
