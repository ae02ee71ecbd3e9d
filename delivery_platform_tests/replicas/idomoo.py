"""Idomoo batch mode as its document describes it: each data file uploaded to Uploads is turned
into one video per row, and the PURL file (`<Prefix><ORIGINAL_FILE_NAME><Suffix>.<ext>`: the
original columns plus `thumbnail_1` and `landingPage`) is written to Downloads ("General
Process" 2-3); a flag file with the PURL's name plus `.flg` may follow it ("Special Features" 2);
rows that fail go to an error file ("Error Handling").

The replica writes like a real server does: a PURL file can be caught half-written between two
sensor ticks (`render(..., halves=True)` writes the first half now, `finish()` the rest), a PURL
can be sent again later with an old timestamp (`resend`), and `videos` counts the videos rendered
per recipient.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from pathlib import Path

from delivery_platform.vendors.idomoo import spec
from delivery_platform_tests.scenario import Received


class IdomooReplica:
    def __init__(
        self,
        account_root: Path,
        *,
        flags: bool,
        key: str = "RecipientID",
        downloads: str = "Downloads",
        error_prefix: str = "ERROR_",
    ):
        self.downloads = account_root / downloads
        self.flags, self.key, self.error_prefix = flags, key, error_prefix
        self.videos: Counter = Counter()  # recipient key -> videos rendered
        self.failed: Counter = Counter()  # recipient key -> rows reported in an error file
        self._unfinished: list[tuple[Path, bytes]] = []

    def render(self, item: Received, *, fail_keys: tuple[str, ...] = (), halves: bool = False) -> Path:
        """One video per row of an uploaded data file; the PURL file (and flag) into Downloads."""
        rows = list(csv.reader(io.StringIO(item.read_bytes().decode("utf-8"), newline="")))
        header, body = rows[0], rows[1:]
        at = header.index(self.key)
        out, errors = io.StringIO(), io.StringIO()
        purl, err = csv.writer(out, lineterminator="\n"), csv.writer(errors, lineterminator="\n")
        purl.writerow(header + list(spec.PURL_COLUMNS))
        err.writerow([self.key, "error"])
        for row in body:
            if row[at] in fail_keys:
                self.failed[row[at]] += 1
                err.writerow([row[at], "render failed: missing asset"])
                continue
            self.videos[row[at]] += 1
            purl.writerow(
                row + [f"https://cdn.idomoo.example/t/{row[at]}.jpg", f"https://v.idomoo.example/{row[at]}"]
            )
        self.downloads.mkdir(parents=True, exist_ok=True)
        base = item.name.rsplit("/", 1)[-1]
        if fail_keys:
            (self.downloads / f"{self.error_prefix}{base}").write_text(errors.getvalue())
        target = self.downloads / spec.purl_name(base)
        data = out.getvalue().encode()
        if halves:  # caught mid-write by the next sensor tick
            target.write_bytes(data[: len(data) // 2])
            self._unfinished.append((target, data))
        else:
            self._write(target, data)
        return target

    def finish(self) -> None:
        """Complete the PURL files written in halves (the upload of the rest, then the flag)."""
        for target, data in self._unfinished:
            self._write(target, data)
        self._unfinished.clear()

    def resend(self, purl: Path) -> None:
        """Idomoo uploads the same PURL file again, keeping an old modification time (`sftp put -p`,
        WinSCP's default, or a clock behind ours): older than anything written since."""
        data = purl.read_bytes()
        purl.unlink()
        self._write(purl, data, at=self._first - 3600)

    def _write(self, target: Path, data: bytes, at: float | None = None) -> None:
        with open(target, "wb") as handle:
            handle.write(data)
        if at is None:  # every write a distinct, later mtime
            at = max(os.stat(target).st_mtime, getattr(self, "_last", 0.0) + 1)
            self._last = at
            self._first = getattr(self, "_first", at)
        bump = at
        os.utime(target, (bump, bump))
        if self.flags:  # the flag last, never older than its PURL
            flag = target.with_name(target.name + ".flg")
            flag.write_bytes(b"")
            os.utime(flag, (bump, bump))
