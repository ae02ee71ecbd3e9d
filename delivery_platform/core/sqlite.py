"""SQLite as the platform's small shared stores use it (the ledger, the alert log and outbox).

Many processes write the same file (every run, the daemon's sensors): WAL lets readers go on
while one writer commits, `busy_timeout` waits for a writer instead of failing, and each
read-decide-write runs in one `BEGIN IMMEDIATE` transaction so two processes never decide on
the same stale read.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def connect(path: Path, timeout_s: float = 60.0, *, synchronous: str = "NORMAL") -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    try:
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={synchronous}")
        con.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One atomic read-decide-write: BEGIN IMMEDIATE, COMMIT, or ROLLBACK on any error."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
