"""digitalAudience as its document describes it: the Onboarding API reads CSV files from the
storage location it polls and onboards the records in them ("CRM Onboarding": "DA Onboarding API
can then periodically retrieve the data and process the onboarding"); later files carry "the new
records" ("Ongoing CRM data update"). A record is identified by our `custom` id, so a record sent
again with the same id replaces the earlier identifiers (R6: changed records).

Opt-outs are modelled as dA removing the `custom` ids of a file from a separately agreed opt-out
location, the only place they may go (R6). Anything in the polled location is onboarded, which is
exactly why an opt-out must never be there.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from urllib.parse import unquote, urlparse

from delivery_platform_tests.scenario import Received


def received_path(item: Received) -> Path:
    """Where the file landed: its URI in the ledger (the opt-out location is not the vendor's outbox)."""
    uri = item.delivery.remote_uri or ""
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else item.path


def read_rows(path: Path) -> list[dict]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        import gzip

        data = gzip.decompress(data)
    text = data.decode("utf-8")
    assert all(line.endswith("\r") for line in text.split("\n")[:-1]), f"{path.name}: not CRLF"
    return list(csv.DictReader(io.StringIO(text, newline="")))


class DigitalAudienceReplica:
    def __init__(self):
        self.records: dict[str, dict] = {}  # custom -> identifiers dA holds
        self.onboarding_files: list[tuple[str, str, list[dict]]] = []  # (partition, name, rows) as onboarded
        self.removed: set[str] = set()

    def apply(self, item: Received) -> None:
        rows = read_rows(received_path(item))
        if item.delivery.deliverable == "crm_optout":
            for row in rows:
                self.records.pop(row["custom"], None)
                self.removed.add(row["custom"])
            return
        # the polled location: every row is onboarded (or replaces the record with the same custom id)
        self.onboarding_files.append((item.delivery.partition_key, item.name, rows))
        for row in rows:
            self.records[row["custom"]] = {k: v or None for k, v in row.items() if k != "custom"}
