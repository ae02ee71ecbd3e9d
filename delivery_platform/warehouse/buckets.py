"""A big day in key-range buckets, one at a time, so memory follows the bucket and not the day.

DuckDB spills sorts, joins and plain aggregates, but not everything: ordered list aggregates
(`list(x ORDER BY y)`) and set operations hold their whole input, and a 10-million-user Lotame
day ran out of its 512 MB that way. Cutting the day into contiguous ranges of the key (from a
Parquet file sorted by it) keeps each query small, and writing the buckets in key order gives
exactly the rows, in exactly the order, of the one big `ORDER BY key` query.
"""

from __future__ import annotations

import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..core.sql import quote_ident, sql_literal

Bounds = tuple[Optional[str], Optional[str]]  # [low, high): None is open
BATCH_ROWS = 100_000
_UNITS = {"": 1, "b": 1, "bytes": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4,
          "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}


def memory_limit_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """The session's memory limit in bytes, as DuckDB reports it (e.g. '488.2 MiB')."""
    text = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    match = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read DuckDB's memory limit {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


# DuckDB's own needs of a query whatever its input (buffers per thread, hash table directories): at small
# limits they are most of the memory. Sized by keys alone, a 100 000-user Lotame day under 64 MB ran out of
# memory in 3 of 5 runs beside a second busy process (test_lotame_memory); with this reserved, in none of 5.
QUERY_RESERVE_BYTES = 24 << 20


def keys_per_bucket(con: duckdb.DuckDBPyConnection, bytes_per_key: int, minimum: int = 1_000) -> int:
    """How many keys one bucket may hold so that its queries stay well inside the memory limit."""
    usable = memory_limit_bytes(con) - QUERY_RESERVE_BYTES
    return max(minimum, usable // bytes_per_key)


def key_ranges(con: duckdb.DuckDBPyConnection, sorted_parquet: Path, key: str,
               per_bucket: int) -> list[Bounds]:
    """Contiguous [low, high) ranges of `key` with about `per_bucket` rows each, read from a Parquet
    file sorted by `key` (one streaming pass). The first range starts open and the last ends open,
    so every key, also one absent from the file, falls in exactly one range."""
    cuts = [row[0] for row in con.execute(
        f"SELECT {quote_ident(key)} FROM read_parquet({sql_literal(str(sorted_parquet))}, "
        "file_row_number = true) "
        f"WHERE file_row_number > 0 AND file_row_number % {int(per_bucket)} = 0").fetchall()]
    cuts = sorted(set(cuts))  # a repeated key must not start two ranges
    lows: list[Optional[str]] = [None, *cuts]
    highs: list[Optional[str]] = [*cuts, None]
    return list(zip(lows, highs))


def in_range(column: str, bounds: Bounds) -> str:
    """SQL: `column` lies in the range (DuckDB's own string order, so ranges and ORDER BY agree)."""
    low, high = bounds
    parts = ([f"{column} >= {sql_literal(low)}"] if low is not None else []) + \
            ([f"{column} < {sql_literal(high)}"] if high is not None else [])
    return " AND ".join(parts) or "TRUE"


class ParquetAppender:
    """Appends query results, in order, to one Parquet file; `rows` counts what was written."""

    def __init__(self, writer: pq.ParquetWriter | None, path: Path):
        self._writer, self.path, self.rows = writer, path, 0

    def append(self, con: duckdb.DuckDBPyConnection, select_sql: str) -> int:
        written = 0
        reader = con.sql(select_sql).to_arrow_reader(BATCH_ROWS)
        for batch in reader:
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.path, reader.schema, compression="zstd")
            if batch.num_rows:
                self._writer.write_batch(batch)
                written += batch.num_rows
        if self._writer is None:  # the first query gave no rows: the file still carries the schema
            self._writer = pq.ParquetWriter(self.path, reader.schema, compression="zstd")
            self._writer.write_table(pa.Table.from_batches([], schema=reader.schema))
        self.rows += written
        return written


@contextmanager
def parquet_appender(target: Path) -> Iterator[ParquetAppender]:
    """Write one Parquet file from many queries, atomically (temporary name, then rename)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    appender = ParquetAppender(None, partial)
    try:
        yield appender
        if appender._writer is None:
            raise ValueError(f"{target}: nothing was appended, so the file has no schema")
        appender._writer.close()
        appender._writer = None
        os.replace(partial, target)
    finally:
        if appender._writer is not None:
            appender._writer.close()
        partial.unlink(missing_ok=True)
