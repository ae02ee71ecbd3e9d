"""The alert outbox: every alert is delivered at least once to every sink, never twice.

An alert is written here once per configured sink (keyed, so the same alert is never queued
twice) before anything is sent. A sink that fails (Slack 429 past its own retries, SMTP down,
a webhook 5xx) leaves its row pending with a backoff; the `alerts_retry` sensor sends what is
due, and a row still pending after `ALERT_STUCK_MINUTES` makes that sensor's tick fail, naming
the sink, so a sink that stays down shows in the UI's sensor page and the daemon's log.
A row being sent is leased for two minutes: a process killed mid-send is retried after the
lease, which may send that one alert twice (at-least-once), never zero times.

It lives with the alert log: alerts.sqlite, or the ledger's PostgreSQL database when
`DELIVERY_LEDGER_URL` is set (core/db.py), so any node's retry sensor sends what another queued.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict
from pathlib import Path

from .. import settings
from ..core import db
from .model import Alert

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_outbox (
    key         TEXT NOT NULL,
    sink        TEXT NOT NULL,
    alert       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  {real} NOT NULL,
    next_try_at {real} NOT NULL,
    sent_at     {real},
    PRIMARY KEY (key, sink)
);
"""
LEASE_S = 120
MAX_BACKOFF_S = 3600


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failures: 30 s, 1 min, 2 min, ... at most 1 h."""
    return min(30 * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)


class AlertOutbox:
    def __init__(self, path: Path | str | None = None):
        self.store = db.open_store(path, settings.data_dir() / "alerts.sqlite")
        self.path = self.store.path if isinstance(self.store, db.SQLiteStore) else None
        self.store.migrate("alert_outbox", [SCHEMA])

    def _write(self):
        # one lock for the outbox: a row is leased by one sender at a time
        return self.store.transaction(lock="alert_outbox")

    def enqueue(self, key: str, sinks: list[str], alert: Alert, now: float | None = None) -> int:
        """Queue the alert for each sink once; returns how many rows are new."""
        now = time.time() if now is None else now
        payload = json.dumps(asdict(alert), default=str)
        with self._write() as con:
            return sum(con.execute("INSERT INTO alert_outbox (key, sink, alert, status, created_at, "
                                   "next_try_at) VALUES (?, ?, ?, 'pending', ?, ?) ON CONFLICT DO NOTHING",
                                   (key, sink, payload, now, now)).rowcount for sink in sinks)

    def take_due(self, sinks: list[str], now: float | None = None, key: str | None = None) -> list[tuple]:
        """Lease the rows due now (pending, or sending with an expired lease): (key, sink, alert)."""
        now = time.time() if now is None else now
        marks = ",".join("?" for _ in sinks) or "''"
        where = (f"sink IN ({marks}) AND ((status = 'pending' AND next_try_at <= ?) OR "
                 "(status = 'sending' AND next_try_at <= ?))") + (" AND key = ?" if key else "")
        params = [*sinks, now, now, *([key] if key else [])]
        with self._write() as con:
            rows = con.execute(f"SELECT key, sink, alert FROM alert_outbox WHERE {where} ORDER BY created_at",
                               params).fetchall()
            for k, sink, _ in rows:
                con.execute("UPDATE alert_outbox SET status = 'sending', next_try_at = ? WHERE key = ? AND sink = ?",
                            (now + LEASE_S, k, sink))
        return [(k, sink, Alert(**json.loads(payload))) for k, sink, payload in rows]

    def sent(self, key: str, sink: str, now: float | None = None) -> None:
        with self._write() as con:
            con.execute("UPDATE alert_outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
                        "last_error = NULL WHERE key = ? AND sink = ?", (time.time() if now is None else now, key, sink))

    def failed(self, key: str, sink: str, error: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as con:
            attempts = con.execute("SELECT attempts FROM alert_outbox WHERE key = ? AND sink = ?",
                                   (key, sink)).fetchone()[0] + 1
            con.execute("UPDATE alert_outbox SET status = 'pending', attempts = ?, last_error = ?, next_try_at = ? "
                        "WHERE key = ? AND sink = ?", (attempts, error[:500], now + backoff(attempts), key, sink))

    def stuck(self, older_than_s: float, now: float | None = None) -> list[dict]:
        """Alerts still not delivered `older_than_s` after they were raised, per sink."""
        cutoff = (time.time() if now is None else now) - older_than_s
        with self._write() as con:
            rows = con.execute("SELECT sink, count(*), min(created_at), max(attempts), max(last_error) FROM "
                               "alert_outbox WHERE status != 'sent' AND created_at <= ? GROUP BY sink ORDER BY sink",
                               (cutoff,)).fetchall()
        return [{"sink": s, "alerts": n, "oldest": dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(
                 timespec="seconds"), "attempts": a, "last_error": e} for s, n, t, a, e in rows]

    def rows(self) -> list[dict]:
        with self._write() as con:
            return [dict(r) for r in con.execute("SELECT * FROM alert_outbox ORDER BY created_at")]
