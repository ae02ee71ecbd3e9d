"""Where the embedded default keeps its files.

Every path can be moved with an environment variable so tests and production instances can
point the same code at other folders. Nothing here opens a file: it only names them.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    return Path(os.environ.get("DELIVERY_DATA_DIR", PROJECT_ROOT / "data"))


def warehouse_path() -> Path:
    """The DuckDB warehouse file (read-only to every pipeline step, written only by `seed`)."""
    return Path(os.environ.get("DELIVERY_WAREHOUSE_PATH", data_dir() / "warehouse.duckdb"))


def ledger_path() -> Path:
    return Path(os.environ.get("DELIVERY_LEDGER_PATH", data_dir() / "ledger.sqlite"))


def staging_dir() -> Path:
    """Shaped partitions (Parquet) and files under construction, per vendor and partition."""
    return Path(os.environ.get("DELIVERY_STAGING_DIR", data_dir() / "staging"))


def outbox_dir() -> Path:
    """Root of the local destinations: one folder per vendor."""
    return Path(os.environ.get("DELIVERY_OUTBOX_DIR", data_dir() / "outbox"))


def returns_dir() -> Path:
    """Files received back from vendors, kept as received, and their parsed Parquet tables."""
    return Path(os.environ.get("DELIVERY_RETURNS_DIR", data_dir() / "returns"))
