"""Small warehouses with hand-written iSpot events, for golden-byte and bad-input tests."""

from __future__ import annotations

from pathlib import Path

import duckdb

from delivery_platform.warehouse.schema import BY_NAME

EVENT_COLUMNS = [c.name for c in BY_NAME["ispot_conversion_events"].columns]


def events_warehouse(path: Path, rows: list[dict]) -> Path:
    """A warehouse file holding only `ispot_conversion_events`, with the given rows."""
    table = BY_NAME["ispot_conversion_events"]
    con = duckdb.connect(str(path))
    con.execute(f"CREATE TABLE {table.name} ({', '.join(f'{c.name} {c.type}' for c in table.columns)})")
    for i, row in enumerate(rows):
        values = {"event_id": i + 1, "loaded_at": row.get("event_ts"), "order_id": None, "amount": None, **row}
        con.execute(f"INSERT INTO {table.name} VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})",
                    [values.get(c) for c in EVENT_COLUMNS])
    con.close()
    return path


def event(ts: str, ip: str = "66.87.152.32", site: str = "TC-1234-1", platform: str = "Web",
          kind: str = "Purchase", custom: str | None = "customer_new,channel_paid-search",
          ua: str = "Mozilla/5.0 (Macintosh; Intel) AppleWebKit/537.36") -> dict:
    return {"event_ts": ts, "client_ip": ip, "site_id": site, "platform": platform, "event_type": kind,
            "custom_data": custom, "user_agent": ua}
