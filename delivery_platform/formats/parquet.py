"""Parquet parts of a staged table: row ranges written by DuckDB, each under a byte target."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import duckdb

from ..core.files import atomic_path, file_md5
from .parts import Part
from ..core.sql import sql_literal




def write_parquet_parts(con: duckdb.DuckDBPyConnection, source_sql: str, folder: Path, name_for: Callable[[int], str],
                        *, target_bytes: int, compression: str = "snappy",
                        first_rows: int | None = None) -> list[Part]:
    """Write `source_sql` (ordered) as numbered Parquet files of about `target_bytes` each.

    Rows per part come from the size of a first trial part, so parts land near the target without
    holding the table in memory; a day with no rows still gives one (empty) file with the schema.
    """
    folder.mkdir(parents=True, exist_ok=True)
    con.execute(f"CREATE OR REPLACE TEMP VIEW _parquet_source AS {source_sql}")
    total = con.execute("SELECT count(*) FROM _parquet_source").fetchone()[0]
    parts: list[Part] = []
    # the first part calibrates the rest; `first_rows` keeps it small when rows are known to be wide
    offset, per_part, number = 0, max(1, min(total, first_rows or 200_000, 200_000)), 1
    while offset < total or not parts:
        path = folder / name_for(number)
        with atomic_path(path) as partial:
            con.execute(f"COPY (SELECT * FROM _parquet_source LIMIT {per_part} OFFSET {offset}) TO "
                        f"{sql_literal(str(partial))} (FORMAT parquet, COMPRESSION {compression})")
        rows = min(per_part, max(total - offset, 0))
        size = path.stat().st_size
        parts.append(Part(path=path, name=path.name, rows=rows, bytes=size, md5=file_md5(path), raw_bytes=size))
        if number == 1 and rows and total > rows:  # calibrate rows per part on the first part
            per_part = max(1, int(rows * target_bytes * 0.9 / max(size, 1)))
        offset += rows
        number += 1
    return parts
