"""The platform's small shared stores (the delivery ledger, the alert log and outbox) on one of two
engines, chosen by configuration:

- SQLite, the embedded default: one file in the data folder (core/sqlite.py: WAL, busy timeout,
  BEGIN IMMEDIATE). Every process of one machine shares it.
- PostgreSQL, when `DELIVERY_LEDGER_URL=postgresql://...` is set: every node shares it. The tables
  live in their own schema (`delivery_platform`), so the Dagster instance's database can host them.

Callers write their SQL once, with `?` placeholders and syntax both engines accept (`INSERT ... ON
CONFLICT`, `RETURNING`); the engines differ only in connecting, locking and DDL types. A
read-decide-write runs in `store.transaction(lock)`: SQLite serialises every writer (BEGIN
IMMEDIATE); PostgreSQL first takes a transaction-scoped advisory lock named `lock`, so decisions on
the same subject (a deliverable, an alert key) serialise and the others run side by side.

Migrations are explicit: `migrate(component, versions)` applies the versions a store lacks, in order,
and records them in `schema_versions`, created on first use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import threading
import urllib.parse
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

from . import sqlite as sqlite_engine

SCHEMA = "delivery_platform"  # the PostgreSQL schema holding the platform's tables
URL_PREFIXES = ("postgresql://", "postgres://")


class StoreError(Exception):
    """The store cannot be reached or used; the message never carries the password."""


def is_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(URL_PREFIXES)


def redact(url: str) -> str:
    """The URL as it may be shown: no password, in the user part or in the query."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    query = "&".join(f"{k}=***" if k.lower() in ("password", "sslpassword") else f"{k}={v}"
                     for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _scrub(text: str, url: str) -> str:
    """An error message with any password of `url` replaced (drivers may echo the conninfo)."""
    secrets = [urllib.parse.urlsplit(url).password or ""]
    secrets += [v for k, v in urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query) if k.lower() == "password"]
    for secret in filter(None, secrets):
        text = text.replace(secret, "***").replace(urllib.parse.quote(secret, safe=""), "***")
    return text.replace(url, redact(url))


def _split(ddl: str) -> list[str]:
    text = "\n".join(line for line in ddl.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """`INSERT ... ON CONFLICT (key) DO UPDATE`: the replace-one-row statement both engines accept."""
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")


class Store:
    kind = ""
    local = True  # True: every writer runs on this machine, so a holder's pid can be checked

    def connect(self):  # -> context manager yielding a connection with `execute(sql, params)`
        raise NotImplementedError

    def transaction(self, lock: str | None = None):
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def ddl(self, text: str) -> str:
        raise NotImplementedError

    def _migrated(self, component: str, version: int) -> bool:
        return False

    def migrate(self, component: str, versions: Sequence[str]) -> None:
        """Apply the component's schema versions not yet applied (version n is versions[n-1])."""
        if self._migrated(component, len(versions)):
            return
        with self.transaction(lock="schema_versions") as con:
            con.execute("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT NOT NULL, "
                        "version INTEGER NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (component, version))")
            done = con.execute("SELECT coalesce(max(version), 0) FROM schema_versions WHERE component = ?",
                               (component,)).fetchone()[0]
            for number, text in enumerate(versions, start=1):
                if number <= done:
                    continue
                for statement in _split(self.ddl(text)):
                    con.execute(statement)
                con.execute("INSERT INTO schema_versions VALUES (?, ?, ?)",
                            (component, number, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")))


class SQLiteStore(Store):
    kind, local = "sqlite", True

    def __init__(self, path: Path, timeout_s: float = 60.0, synchronous: str = "NORMAL"):
        self.path, self.timeout_s, self.synchronous = Path(path), timeout_s, synchronous
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def connect(self) -> Iterator:
        with sqlite_engine.connect(self.path, self.timeout_s, synchronous=self.synchronous) as con:
            yield con

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator:
        with self.connect() as con, sqlite_engine.transaction(con):  # BEGIN IMMEDIATE: one writer at a time
            yield con

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def ddl(self, text: str) -> str:
        return text.replace("{id}", "INTEGER PRIMARY KEY AUTOINCREMENT").replace("{real}", "REAL")


class Row(tuple):
    """A result row readable by position and by column name, like sqlite3.Row (and `dict(row)`)."""

    names: tuple[str, ...] = ()

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self) -> tuple[str, ...]:
        return self.names


def _row_factory(cursor):
    names = tuple(c.name for c in cursor.description or ())
    kind = type("Row", (Row,), {"names": names})
    return lambda values: kind(values)


@lru_cache(maxsize=256)
def _pg_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class _PgConnection:
    """A psycopg connection that takes the callers' `?` placeholders."""

    def __init__(self, raw):
        self.raw = raw

    def execute(self, sql: str, params: Sequence = ()):
        return self.raw.execute(_pg_sql(sql), tuple(params))


def lock_id(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock."""
    return int.from_bytes(hashlib.blake2b(f"{SCHEMA}:{name}".encode(), digest_size=8).digest(), "big", signed=True)


class PostgresStore(Store):
    kind, local = "postgresql", False
    _connections: dict = {}  # (url, pid, thread) -> psycopg connection: one per thread, reused
    _done: set = set()  # (url, component, version) migrated in this process
    _guard = threading.Lock()

    def __init__(self, url: str, timeout_s: float = 60.0):
        self.url, self.timeout_s = url, timeout_s

    def describe(self) -> str:
        return redact(self.url)

    def _open(self):
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - psycopg is a pinned dependency
            raise StoreError("DELIVERY_LEDGER_URL names PostgreSQL but psycopg is not installed") from exc
        try:
            con = psycopg.connect(self.url, autocommit=True, connect_timeout=10, row_factory=_row_factory)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.describe()}: {_scrub(str(exc), self.url)}") from None
        try:
            with con.transaction():  # concurrent CREATE SCHEMA IF NOT EXISTS can collide: serialise it
                con.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id("create-schema"),))
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            con.execute(f"SET search_path TO {SCHEMA}")
            # wait for a lock as long as SQLite's busy timeout, then fail rather than hang
            con.execute(f"SET lock_timeout = '{int(self.timeout_s * 1000)}ms'")
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def connect(self) -> Iterator[_PgConnection]:
        import psycopg

        key = (self.url, os.getpid(), threading.get_ident())
        with self._guard:
            con = self._connections.get(key)
        if con is None or con.closed or con.broken:
            con = self._open()
            with self._guard:
                self._connections[key] = con
        try:
            yield _PgConnection(con)
        except psycopg.OperationalError as exc:
            if con.broken or con.closed:  # the server went away: the next call reconnects
                with self._guard:
                    self._connections.pop(key, None)
            raise StoreError(f"{self.describe()}: {_scrub(str(exc), self.url)}") from None

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[_PgConnection]:
        with self.connect() as con, con.raw.transaction():
            if lock is not None:
                con.raw.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id(lock),))
            yield con

    def ddl(self, text: str) -> str:
        return (text.replace("{id}", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
                .replace("{real}", "DOUBLE PRECISION"))

    def _migrated(self, component: str, version: int) -> bool:
        return (self.url, component, version) in self._done

    def migrate(self, component: str, versions: Sequence[str]) -> None:
        super().migrate(component, versions)
        self._done.add((self.url, component, len(versions)))


def ledger_url() -> str | None:
    """`DELIVERY_LEDGER_URL`: the PostgreSQL database of the ledger and the alert log, or None (SQLite)."""
    url = os.environ.get("DELIVERY_LEDGER_URL", "").strip()
    if url and not is_url(url):
        raise StoreError(f"DELIVERY_LEDGER_URL must start with postgresql:// (got {re.sub(r'//.*@', '//***@', url)})")
    return url or None


def open_store(target: Path | str | None, default: Path, **sqlite_options) -> Store:
    """A PostgreSQL URL or a SQLite path as given; with nothing given, `DELIVERY_LEDGER_URL` when set,
    else the SQLite file `default`."""
    if is_url(target):
        return PostgresStore(str(target))
    if target:
        return SQLiteStore(Path(target), **sqlite_options)
    url = ledger_url()
    return PostgresStore(url) if url else SQLiteStore(default, **sqlite_options)
