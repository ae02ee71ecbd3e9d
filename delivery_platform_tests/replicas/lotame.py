"""What Lotame holds, from lotame-spherical-inbound-batch.txt and its file-format pages (DIGEST 1.2-1.5).

- The day's folder is imported only once its `YYYYMMDD.done` is there ("create last"), and only
  data files whose `.md5` holds their real checksum.
- Each line is one JSON object for one `userid`; a record without `consent: true` and without a
  `tcfconsent` string is skipped.
- "Comprehensive files each day contain every segment for each ID in the file": the ID's segments
  become the record's `segments` (IDs not in the file keep theirs).
- "Delta files contain only segments added or removed from the ID since the prior file": the
  record's `segments` are added and its `remove` ("Segments to remove from the userid") removed.
Which kind a folder is was agreed with the TAM: the replica is told (`mode_of`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Callable


class LotameReplica:
    def __init__(self, mode_of: Callable[[str], str]):
        self.mode_of = mode_of  # folder (YYYYMMDD) -> "comprehensive" | "delta"
        self.held: dict[str, set[str]] = {}
        self.pending: dict[str, dict[str, bytes]] = {}  # folder -> file name -> bytes
        self.imported: list[str] = []  # folders, in import order
        self.skipped = 0

    def apply(self, received) -> None:
        folder, _, name = received.name.rpartition("/")
        self.pending.setdefault(folder, {})[name] = received.read_bytes()
        if name == f"{folder}.done":
            self._import(folder, self.pending.pop(folder))

    def _import(self, folder: str, files: dict[str, bytes]) -> None:
        data = sorted(n for n in files if n.endswith(".json.gz"))
        assert data, f"{folder}: a .done without data files"
        mode = self.mode_of(folder)
        for name in data:
            checksum = files[f"{name}.md5"].decode().split()[0]
            assert checksum == hashlib.md5(files[name]).hexdigest(), f"{folder}/{name}: .md5 does not match"
            for line in gzip.decompress(files[name]).splitlines():
                self._record(json.loads(line), mode)
        self.imported.append(folder)

    def _record(self, record: dict, mode: str) -> None:
        if record.get("consent") is not True and not record.get("tcfconsent"):
            self.skipped += 1
            return
        names = {s["name"] if isinstance(s, dict) else s for s in record["segments"]}
        removed = set(record.get("remove") or [])
        if mode == "comprehensive":
            now = names
        else:
            now = (self.held.get(record["userid"], set()) - removed) | names
        if now:
            self.held[record["userid"]] = now
        else:
            self.held.pop(record["userid"], None)

    def memberships(self) -> set[tuple[str, str]]:
        return {(user, seg) for user, segs in self.held.items() for seg in segs}
