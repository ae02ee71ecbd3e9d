"""What Optimove holds, from optimove-data-delivery.txt and DIGEST section 3.

- Files are gzip only ("ZIP is not supported"): CSV with a header, or JSON lines ("each JSON
  object should be in a separate row").
- "Optimove only extracts incremental data from the transactional and fact tables": an
  incremental table's rows are upserted by the table's primary key (a row sent again, e.g. a
  refund with a new LastUpdated, replaces the earlier one).
- Other (dimension) tables are sent whole: the day's files replace the table.
Which tables are incremental, and their keys, were agreed in the ETL form: the replica is told.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re

NAME = re.compile(r"^(?P<table>[A-Za-z_]+)/(?P=table)_(?P<day>\d{8})_(?P<part>\d{3})\.(?P<ext>csv|json)\.gz$")


class OptimoveReplica:
    def __init__(self, keys: dict[str, str], loads: dict[str, str]):
        self.keys, self.loads = keys, loads  # table -> primary key column, table -> full | incremental
        self.tables: dict[str, dict[str, dict]] = {t: {} for t in keys}
        self.full_day: dict[str, str] = {}  # full table -> the day whose files it holds

    def apply(self, received) -> None:
        match = NAME.match(received.name)
        assert match, f"{received.name}: not a file name Optimove was told about"
        table, day = match["table"], match["day"]
        text = gzip.decompress(received.read_bytes()).decode("utf-8")
        rows = (
            list(csv.DictReader(io.StringIO(text, newline="")))
            if match["ext"] == "csv"
            else [json.loads(line) for line in text.splitlines()]
        )
        held = self.tables[table]
        if self.loads[table] == "full" and self.full_day.get(table) != day:
            held.clear()  # a new day's full extract replaces the table
            self.full_day[table] = day
        for row in rows:
            held[row[self.keys[table]]] = row
