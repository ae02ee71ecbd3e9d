"""Small warehouses with hand-written rows, for golden-byte and bad-input tests."""

from __future__ import annotations

from pathlib import Path

import duckdb

from delivery_platform.warehouse.schema import BY_NAME


def table_warehouse(path: Path, tables: dict[str, list[dict]]) -> Path:
    """A warehouse file holding only the given source tables (schema from warehouse/schema.py);
    columns a row leaves out are NULL."""
    con = duckdb.connect(str(path))
    for name, rows in tables.items():
        table = BY_NAME[name]
        con.execute(f"CREATE TABLE {name} ({', '.join(f'{c.name} {c.type}' for c in table.columns)})")
        for row in rows:
            con.execute(f"INSERT INTO {name} VALUES ({', '.join('?' for _ in table.columns)})",
                        [row.get(c.name) for c in table.columns])
    con.close()
    return path


def events_warehouse(path: Path, rows: list[dict]) -> Path:
    """A warehouse holding only `ispot_conversion_events`, with the given rows."""
    rows = [{"event_id": i + 1, "loaded_at": row.get("event_ts"), **row} for i, row in enumerate(rows)]
    return table_warehouse(path, {"ispot_conversion_events": rows})


def event(ts: str, ip: str = "66.87.152.32", site: str = "TC-1234-1", platform: str = "Web",
          kind: str = "Purchase", custom: str | None = "customer_new,channel_paid-search",
          ua: str = "Mozilla/5.0 (Macintosh; Intel) AppleWebKit/537.36") -> dict:
    return {"event_ts": ts, "client_ip": ip, "site_id": site, "platform": platform, "event_type": kind,
            "custom_data": custom, "user_agent": ua}
