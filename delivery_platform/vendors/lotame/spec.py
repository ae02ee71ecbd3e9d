"""Lotame Spherical inbound batch, as `lotame-spherical-inbound-batch.txt` and the file format
pages (DIGEST section 1) state it: three files a day in a `YYYYMMDD/` folder.

Decisions on the documents' ambiguities are DIGEST 1.6, cited by number below.
"""

from __future__ import annotations

import pandera.pandas as pa

from ...validation import list_checks, sql_checks  # noqa: F401  (registers the list and IPv4 checks)

# 1.2: the three files. The folder and the .done carry the DATA day (the partition), not the day it is
# sent: the document is silent (1.6 #5), and a data day gives one folder per file set, so a late day
# sent beside the next one never shares a folder with it and a re-run keeps its name.
DATA_FILE = "segmentmembership.json.gz"
MD5_FILE = DATA_FILE + ".md5"
MAX_GZIP_BYTES = 5 * 1000 ** 3  # 1.2: above this the file is split into numbered parts (the TAM enables that)


def part_file(number: int, parts: int) -> str:
    """`segmentmembership.json.gz`, or `segmentmembership.001.json.gz`... when split (1.2)."""
    return DATA_FILE if parts == 1 else f"segmentmembership.{number:03d}.json.gz"


def folder(partition_key: str) -> str:
    return partition_key.replace("-", "")


def done_file(partition_key: str) -> str:
    return f"{folder(partition_key)}.done"


# 1.4: confirmed ID types; the full list sits behind Lotame's login, so it is configuration.
DEFAULT_ID_TYPES = ("PANO", "EMAIL", "PID", "IDFA", "GAID", "RIDA", "TVOS")
# 1.6 #3: "alphanumeric only" yet the official examples carry hyphenated UUIDs.
USERID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]*$"
DEVICE_ID_TYPES = ("IDFA", "GAID", "RIDA", "TVOS")
# Segment recency is epoch seconds (1.3); anything outside 2000..2100 is a unit mistake (ms, µs).
EPOCH_MIN, EPOCH_MAX = 946_684_800, 4_102_444_800
FULL_REFRESH_DAYS = 30  # Overview: delta files need a periodic comprehensive file, 30 days by default


class SegmentMembership(pa.DataFrameModel):
    """One record per user ID ("Sending Behaviors"): one line of segmentmembership.json.gz."""

    userid: str = pa.Field(unique=True, str_matches=USERID_PATTERN,
                           description="the ID, unique in the file; alphanumeric plus '-' for UUID device IDs (1.6 #3)")
    idtype: str = pa.Field(isin=list(DEFAULT_ID_TYPES), description="a supported ID type (1.4), upper case")
    segments: object = pa.Field(list_items_match={"field": "name", "pattern": r"^\S(.*\S)?$"},
                                list_items_between={"field": "timestamp", "min_value": EPOCH_MIN,
                                                    "max_value": EPOCH_MAX},
                                list_items_unique={"field": "name"},
                                description="[{name, timestamp}]: the segments, recency in epoch seconds (1.3)")
    remove: object = pa.Field(nullable=True, description="names of segments the ID held at Lotame and left "
                                                         "(1.6 #2); with `segments: []` it clears the ID (R11)")
    ips: object = pa.Field(nullable=True, list_items_match={"field": "ip", "pattern": sql_checks.IPV4_RE},
                           description="[{ip, timestamps}]: IPv4 only, IPv6 is not supported (1.3)")
    country: str = pa.Field(nullable=True, str_matches=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 (1.3)")
    consent: object = pa.Field(nullable=True, isin=[True], description="true when the user consented; anything else "
                                                                   "makes Lotame skip the record (1.3)")
    tcfconsent: str = pa.Field(nullable=True, description="IAB TCF string when only that was collected")

    class Config:
        strict = True
        ordered = True
        # 1.3 / 1.6 #7: a record without consent=true or a TCF string is skipped by Lotame
        at_least_one_present = {"columns": ["consent", "tcfconsent"]}


def membership_schema(*, comprehensive: bool, id_types: list[str]) -> pa.DataFrameSchema:
    """The model for one file: the configured ID types; every record lists segments or removals.

    A comprehensive record may carry `segments: []` only to clear an ID that left every segment,
    and then names them in `remove` (R11); a delta record adds or removes something."""
    schema = SegmentMembership.to_schema()
    schema = schema.update_column("idtype", checks=[pa.Check.isin(sorted(id_types))])
    schema.checks = list(schema.checks) + [pa.Check.any_list_not_empty(columns=["segments", "remove"])]
    return schema
