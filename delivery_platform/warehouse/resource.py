"""Read access to the warehouse, and the staging area between pipeline steps.

The pipeline never writes the DuckDB warehouse file: every step opens it read-only, so any
number of steps and backfill runs read it at once without DuckDB's single-writer lock.
What a step produces is staged as Parquet under `data/staging/` (written to a temporary name
and renamed; iSpot stages a selection of warehouse rows instead, `staged_plan`), and what
vendors send back is kept under `data/returns/` as Parquet, one file per received file;
`connect()` exposes those as views (`returns_<table>`), so the warehouse and the returns are
queried together.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import dagster as dg
import duckdb

from .. import settings
from ..core.files import atomic_path
from ..core.sql import sql_literal
from .buckets import memory_limit_bytes




class WarehouseResource(dg.ConfigurableResource):
    """The embedded DuckDB warehouse (read-only) plus staging and returns folders."""

    path: Optional[str] = None
    staging_dir: Optional[str] = None
    returns_dir: Optional[str] = None
    threads: Optional[int] = None
    # DuckDB spills beyond this; with Python and Dagster a step stays under 1 GB. Unset, it comes
    # from DELIVERY_DUCKDB_MEMORY_LIMIT (e.g. "2GB") when a session opens, else 512MB.
    memory_limit: Optional[str] = None

    @property
    def warehouse_file(self) -> Path:
        return Path(self.path) if self.path else settings.warehouse_path()

    @property
    def staging_root(self) -> Path:
        return Path(self.staging_dir) if self.staging_dir else settings.staging_dir()

    @property
    def returns_root(self) -> Path:
        return Path(self.returns_dir) if self.returns_dir else settings.returns_dir()

    @contextmanager
    def connect(self, *, attach_warehouse: bool = True,
                memory_share: float = 1.0) -> Iterator[duckdb.DuckDBPyConnection]:
        """An in-memory DuckDB session with the warehouse attached read-only as `wh` (and the
        default schema), bounded memory, and `returns_<table>` views over received files.
        `memory_share`: the part of the limit this session takes, for a step that holds large
        buffers of its own beside DuckDB's."""
        con = duckdb.connect(config={"memory_limit": duckdb_memory_limit(self.memory_limit),
                                     **({"threads": self.threads} if self.threads else {})})
        try:
            if memory_share != 1.0:
                con.execute(f"SET memory_limit = '{int(memory_limit_bytes(con) * memory_share) >> 20}MiB'")
            con.execute("SET preserve_insertion_order = true")
            tmp = self.staging_root / "_duckdb_tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            con.execute(f"SET temp_directory = {sql_literal(str(tmp))}")
            if attach_warehouse:
                if not self.warehouse_file.exists():
                    raise FileNotFoundError(
                        f"warehouse {self.warehouse_file} does not exist: build it with "
                        "`python -m delivery_platform.warehouse seed` (or `make demo`)")
                con.execute(f"ATTACH {sql_literal(str(self.warehouse_file))} AS wh (READ_ONLY)")
                con.execute("USE wh")
            for table_dir in sorted(self.returns_root.glob("*")) if self.returns_root.exists() else []:
                if table_dir.is_dir() and any(table_dir.glob("*.parquet")):
                    con.execute(f"CREATE OR REPLACE TEMP VIEW returns_{table_dir.name} AS SELECT * FROM "
                                f"read_parquet({sql_literal(str(table_dir / '*.parquet'))}, union_by_name = true)")
            yield con
        finally:
            con.close()

    # --- staging ------------------------------------------------------------------------------
    def stage_dir(self, vendor: str, deliverable: str, partition_key: str) -> Path:
        return self.staging_root / vendor / deliverable / partition_key

    def staged_table(self, vendor: str, deliverable: str, partition_key: str) -> Path:
        """Where the shaped rows of a partition are staged (Parquet)."""
        return self.stage_dir(vendor, deliverable, partition_key) / "rows.parquet"

    def staged_plan(self, vendor: str, deliverable: str, partition_key: str) -> Path:
        """Where a partition's rows are staged as a selection instead (JSON): for rows read where they
        lie, in the warehouse, by the steps after (iSpot: copying them cost more than reading them)."""
        return self.stage_dir(vendor, deliverable, partition_key) / "rows.json"

    def is_staged(self, vendor: str, deliverable: str, partition_key: str) -> bool:
        return (self.staged_table(vendor, deliverable, partition_key).exists()
                or self.staged_plan(vendor, deliverable, partition_key).exists())

    def files_dir(self, vendor: str, deliverable: str, partition_key: str) -> Path:
        """Where the files of a partition are built before delivery."""
        return self.stage_dir(vendor, deliverable, partition_key) / "files"


def duckdb_memory_limit(configured: Optional[str] = None) -> str:
    """The memory limit of every DuckDB session: the resource's setting, else the environment's."""
    value = (configured or os.environ.get("DELIVERY_DUCKDB_MEMORY_LIMIT") or "512MB").strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB|%)", value, re.IGNORECASE):
        raise ValueError(f"DELIVERY_DUCKDB_MEMORY_LIMIT={value!r} is not a size such as 512MB or 2GB")
    return value


def copy_to_parquet(con: duckdb.DuckDBPyConnection, select_sql: str, target: Path, *,
                    row_group_size: int = 122_880) -> int:
    """Write a query's rows to `target` atomically (temp name, then rename). Returns the row count.

    Snappy: staged rows are a local scratch copy read several times in a run, and snappy costs less
    CPU than zstd both ways (measured while iSpot still staged a copy: a 10 M-row run's medians
    28.7 s -> 27.3 s in three interleaved pairs; the file 167 MB against 104 MB)."""
    with atomic_path(target) as partial:  # COPY answers the rows it wrote: no second read of the file
        return con.execute(f"COPY ({select_sql}) TO {sql_literal(str(partial))} (FORMAT parquet, COMPRESSION snappy, "
                           f"ROW_GROUP_SIZE {row_group_size})").fetchone()[0]
