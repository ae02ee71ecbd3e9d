"""What iSpot holds after our uploads, modelled from `ispot-tv-conversions-api.txt`.

- "Files must have unique file names ... only the first file will be kept" and the status
  table's 409 "The file already exists": a name is accepted once;
- "CSV File Format": UTF-8, comma separated, headers case-sensitive, every value (not the
  headers) in double quotes; the status table's 400s for a wrong header, a file under 8 MB and
  a file over 200 MB;
- iSpot accumulates: every accepted file adds its rows (there is no delete or replace).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field

MIN_BYTES = 8 * 1000 * 1000
MAX_BYTES = 200 * 1000 * 1000


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass
class ISpotReplica:
    header: tuple[str, ...]
    min_bytes: int = MIN_BYTES
    max_bytes: int = MAX_BYTES
    files: dict[str, bytes] = field(default_factory=dict)
    rows: Counter = field(default_factory=Counter)  # (value, ...) -> times held

    def upload(self, name: str, body: bytes) -> None:
        """Apply one upload as iSpot would, or raise Refused with the document's status."""
        if not name.endswith(".csv"):
            raise Refused(
                400, "The file cannot be processed because it is not in the required CSV file format."
            )
        text = body.decode("utf-8")  # UnicodeDecodeError: not "CSV UTF-8"
        first, _, rest = text.partition("\n")
        if first != ",".join(self.header):
            raise Refused(400, "The content is not valid. Please validate the headers and content.")
        if len(body) < self.min_bytes:
            raise Refused(400, "The file is too small. The minimum file size allowed is 8 MB.")
        if len(body) > self.max_bytes:
            raise Refused(400, "The file is too large. The maximum file size allowed is 200 MB.")
        if name in self.files:
            raise Refused(409, "The file already exists.")
        rows = []
        for line in rest.splitlines():
            values = next(csv.reader(io.StringIO(line)))
            if len(values) != len(self.header) or not (line.startswith('"') and line.endswith('"')):
                raise Refused(400, "The content is not valid. Please validate the headers and content.")
            rows.append(tuple(values))
        self.files[name] = body
        self.rows.update(rows)

    def rows_of_day(self, day: str, datetime_column: int = 1) -> Counter:
        return Counter({r: n for r, n in self.rows.items() if r[datetime_column].startswith(day)})
