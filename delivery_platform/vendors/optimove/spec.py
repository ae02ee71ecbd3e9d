"""Optimove data delivery, as `optimove-data-delivery.txt` and DIGEST section 3 state it.

Optimove lets the client define its tables (DIGEST 3.3 #4): the models below are ours, and they
enforce the document's format rules on them: `yyyy-MM-dd` dates without sentinels, `yyyy-MM-dd
hh:mm:ss` datetimes (no `T`, no zone), `.` decimals without currency symbols, unique primary keys,
the same customer ID everywhere, and an accurate `LastUpdated` on every row.
"""

from __future__ import annotations

import pandera.pandas as pa

from ...validation import sql_checks  # noqa: F401  (registers no_formula_prefix)

DATE = r"^\d{4}-\d{2}-\d{2}$"
DATETIME = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
SENTINEL_DATES = ["1900-01-01", "1899-12-30", "0001-01-01", "9999-12-31"]
FORMATS = ("csv", "json", "parquet")  # "Formats": CSV, JSON, PARQUET
COMPRESSION = "gzip"  # GZ only: ZIP is not supported
MAX_FILE_BYTES = 1000 ** 3  # 1 GB per file at most
# "recommended to split large files into smaller batches ranging from 100 to 250 MB" (measured as sent)
BAND_LOW_BYTES, BAND_HIGH_BYTES = 100 * 1000 ** 2, 250 * 1000 ** 2
# the writers cut near this; a small last part then merges into the one before and stays under 250 MB
DEFAULT_TARGET_BYTES = 150 * 1000 ** 2
# "only extracts incremental data from the transactional and fact tables": dimension tables are full
LOADS = ("full", "incremental")


class Customers(pa.DataFrameModel):
    """Customer master data, one row per customer changed in the window."""

    # ids are free text too: a leading = + - @ would run as a formula in the client's spreadsheet
    CustomerID: str = pa.Field(unique=True, str_matches=r"^\S+$", no_formula_prefix=(),
                               description="primary key; the same ID in every table")
    # free text lands in spreadsheets at the client: a leading = + - @ would run as a formula
    Email: str = pa.Field(nullable=True, no_formula_prefix=(), description="email as the customer gave it")
    FirstName: str = pa.Field(nullable=True, no_formula_prefix=())
    LastName: str = pa.Field(nullable=True, no_formula_prefix=())
    Country: str = pa.Field(nullable=True, str_matches=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    RegistrationDate: str = pa.Field(nullable=True, str_matches=DATE, notin=SENTINEL_DATES, description="yyyy-MM-dd")
    BirthDate: str = pa.Field(nullable=True, str_matches=DATE, notin=SENTINEL_DATES,
                              description="yyyy-MM-dd; unknown is blank, never a sentinel like 1900-01-01")
    OptInEmail: str = pa.Field(nullable=True, isin=["true", "false"])
    LastUpdated: str = pa.Field(str_matches=DATETIME, description="yyyy-MM-dd hh:mm:ss UTC: the incremental key")

    class Config:
        strict = True
        ordered = True


class Transactions(pa.DataFrameModel):
    """Orders changed in the window (new, or updated later: refunds)."""

    TransactionID: str = pa.Field(unique=True, str_matches=r"^\S+$", no_formula_prefix=(), description="primary key")
    CustomerID: str = pa.Field(str_matches=r"^\S+$", no_formula_prefix=(), description="Customers.CustomerID")
    TransactionDate: str = pa.Field(str_matches=DATETIME, description="yyyy-MM-dd hh:mm:ss UTC")
    Amount: float = pa.Field(ge=0, description="decimal point '.', no currency symbol; refunds keep a positive amount")
    Currency: str = pa.Field(str_matches=r"^[A-Z]{3}$", description="ISO 4217, its own column")
    ProductID: str = pa.Field(nullable=True, no_formula_prefix=())
    Status: str = pa.Field(isin=["completed", "refunded"])
    LastUpdated: str = pa.Field(str_matches=DATETIME, description="yyyy-MM-dd hh:mm:ss UTC: the incremental key")

    class Config:
        strict = True
        ordered = True
