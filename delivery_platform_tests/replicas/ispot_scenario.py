"""iSpot's part of the day-by-day harness: the warehouse changes of a simulated calendar and the
truth iSpot should hold, with the documented exclusions named and counted."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field

import duckdb

HEADER = ("ip", "datetime", "siteid", "app", "type", "customdata", "useragent")
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0"


def line_bytes(row: tuple) -> int:
    """Bytes of one data line as the document wants it (every value quoted), for the size rule."""
    return len(('"' + '","'.join(v.replace('"', '""') for v in row) + '"\n').encode())


@dataclass
class EventMaker:
    """Unique, already-normalised events (so a row identifies its event) for a data day."""

    rng: random.Random
    next_id: int = 1
    rows: list = field(default_factory=list)

    def make(self, day: dt.date, n: int, loaded_at: dt.datetime | None = None, ipv6: int = 0) -> list[tuple]:
        out = []
        for k in range(n + ipv6):
            i = self.next_id
            self.next_id += 1
            at = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=self.rng.randrange(86400))
            ip = f"2001:db8::{i:x}" if k >= n else f"10.{i // 65025 % 250}.{i // 255 % 255}.{i % 255 + 1}"
            loaded = loaded_at or at + dt.timedelta(seconds=30 + self.rng.randrange(1800))
            custom = self.rng.choice(
                [None, "customer_new,channel_paid-search", "customer_returning,channel_email"]
            )
            out.append(
                (
                    i,
                    ip,
                    at,
                    loaded,
                    self.rng.choice(["TC-1234-1", "TC-1234-2"]),
                    self.rng.choice(["web", "app"]),
                    self.rng.choice(["purchase", "signup"]),
                    custom,
                    UA,
                )
            )
        return out


def insert(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    con.executemany(
        "INSERT INTO ispot_conversion_events (event_id, client_ip, event_ts, loaded_at, site_id, "
        "platform, event_type, custom_data, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def truth(path, now: dt.datetime) -> dict[str, Counter]:
    """Per data day, the rows iSpot should hold: every event loaded by `now`, in the file's columns."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "SELECT strftime(event_ts, '%Y-%m-%d'), client_ip, strftime(event_ts, '%Y-%m-%d %H:%M:%S'), "
            "site_id, platform, event_type, coalesce(custom_data, ''), user_agent "
            "FROM ispot_conversion_events WHERE loaded_at <= ?",
            [now.replace(tzinfo=None)],
        ).fetchall()
    finally:
        con.close()
    out: dict[str, Counter] = {}
    for day, *row in rows:
        out.setdefault(day, Counter())[tuple(row)] += 1
    return out
