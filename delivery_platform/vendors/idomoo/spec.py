"""Idomoo batch mode, as `idomoo-batch-mode.txt` and DIGEST section 5 state it.

The data file's columns are the project's storyboard parameters (5.3 #7): configuration, matched
exactly. The models here are built from that header list.
"""

from __future__ import annotations

import datetime as dt

import pandera.pandas as pa

from ...validation import sql_checks  # noqa: F401  (registers not_blank)

EXTENSIONS = ("csv", "tsv", "txt", "dat")  # General Process 2a-2d (and a zip of one of them, 2f)
DELIMITERS = (",", ";", "|", "tab")
ENCODINGS = ("utf-8", "windows-1252")
E2E_ROWS = 20  # "End to End Testing - A Must!": a 20-row file before launch
PURL_PREFIX, PURL_SUFFIX = "PURL_", ""  # the defaults of the PURL naming convention
PURL_COLUMNS = ("thumbnail_1", "landingPage")  # the two columns Idomoo adds (General Process 3)
HTTPS = r"^https://[^\s/$.?#][^\s]*$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def data_file_name(client: str, project: str, at: dt.datetime, sequence: int, ext: str) -> str:
    """`<client>_<project>_YYYYMMdd_HHMMss_NN.<ext>` (5.3 #1): the UTC date and time the batch is
    built and uploaded (the document: the name "contains exact time of day"), and NN our sequence
    for that batch. A batch goes up on its send date, so the date is the send date; a rebuilt batch
    gets the next NN and a later time, so no name is ever used twice."""
    at = at.astimezone(dt.timezone.utc)
    return f"{client}_{project}_{at:%Y%m%d}_{at:%H%M%S}_{sequence:02d}.{ext}"


def purl_name(data_file: str, prefix: str = PURL_PREFIX, suffix: str = PURL_SUFFIX) -> str:
    """`<Prefix><ORIGINAL_FILE_NAME><Suffix>.<ORIGINAL_FILE_EXTENSION>`."""
    stem, _, ext = data_file.rpartition(".")
    return f"{prefix}{stem}{suffix}.{ext}"


def original_name(purl: str, prefix: str = PURL_PREFIX, suffix: str = PURL_SUFFIX) -> str | None:
    stem, _, ext = purl.rpartition(".")
    if not stem.startswith(prefix) or not stem.endswith(suffix):
        return None
    return f"{stem[len(prefix):len(stem) - len(suffix) if suffix else None]}.{ext}"


def data_file_schema(headers: list[str], *, key: str, email_columns: list[str], url_columns: list[str],
                     optional: list[str]) -> pa.DataFrameSchema:
    """Every storyboard parameter present and non-empty (unless optional), well-formed emails and
    URLs, a unique recipient key; the exact header list, in order (strict, ordered)."""
    columns = {}
    for header in headers:
        # values are shown in videos and opened in spreadsheets: no leading formula characters
        checks = [pa.Check.not_blank(), pa.Check.no_formula_prefix()]
        if header in email_columns:
            checks.append(pa.Check.str_matches(EMAIL))
        if header in url_columns:
            checks.append(pa.Check.str_matches(HTTPS))
        columns[header] = pa.Column(str, checks=checks, nullable=header in optional, unique=header == key,
                                    description="storyboard parameter" + (" (recipient key)" if header == key else ""))
    return pa.DataFrameSchema(columns, strict=True, ordered=True, name="idomoo data file")


def purl_schema(headers: list[str], key: str) -> pa.DataFrameSchema:
    """A PURL file: the agreed original columns plus `thumbnail_1` and `landingPage`, links https."""
    columns = {h: pa.Column(str, nullable=True, unique=h == key) for h in headers}
    columns.update({c: pa.Column(str, checks=[pa.Check.str_matches(HTTPS)], description="https link") for c in PURL_COLUMNS})
    return pa.DataFrameSchema(columns, strict=False, name="idomoo PURL file")


class StoryboardRecipients(pa.DataFrameModel):
    """The demo storyboard's data file (the default configuration); real projects configure theirs."""

    RecipientID: str = pa.Field(unique=True, not_blank=(), description="recipient key")
    FirstName: str = pa.Field(not_blank=())
    LastName: str = pa.Field(not_blank=())
    Email: str = pa.Field(not_blank=(), str_matches=EMAIL)
    Language: str = pa.Field(not_blank=())
    OfferCode: str = pa.Field(not_blank=())
    City: str = pa.Field(not_blank=())
    Points: str = pa.Field(not_blank=())

    class Config:
        strict = True
        ordered = True
