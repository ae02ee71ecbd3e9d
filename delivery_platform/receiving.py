"""Taking in files a vendor sends back: our copy first, and never at the cost of an earlier one.

Vendors re-send files under the same name (a corrected PURL file, a match export refreshed in
place). The sensors give each new version its own run; here each version's bytes are kept: the
newest under the file's name, an earlier different version moved aside to `<name>~<md5 prefix>`.
The same applies to the quarantine folder, where rejected files wait for a human.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .destinations.base import Destination
from .core.files import file_md5


def _set_aside(target: Path, incoming: Path) -> None:
    """Before `incoming` replaces `target`, move a different `target` to `target~<md5>`."""
    if not target.exists():
        return
    earlier = file_md5(target)
    aside = target.with_name(f"{target.name}~{earlier[:12]}")
    if earlier != file_md5(incoming) and not aside.exists():
        os.replace(target, aside)


def keep_received(source: Destination, remote: str, folder: Path, key: str) -> Path:
    """Download `remote` to `folder/key`, keeping any earlier different version beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / key
    incoming = source.download(remote, folder / f".{key}.incoming")
    _set_aside(target, incoming)
    os.replace(incoming, target)
    return target


def quarantine(kept: Path, folder: Path, key: str) -> Path:
    """Copy a rejected file to `folder/key` for a human, keeping an earlier different one."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / key
    partial = folder / f".{key}.incoming"
    shutil.copyfile(kept, partial)
    _set_aside(target, partial)
    os.replace(partial, target)
    return target


def csv_error(exc: Exception) -> str:
    """DuckDB's CSV error in one line: where, why, and the start of the offending row
    (its own text runs to pages of reader options and would paste a 5 MB field whole)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    where = next((line for line in lines if line.startswith(("Invalid Input Error", "Conversion Error"))), lines[0])
    why = next((line for line in lines if line.startswith(("Expected Number of Columns", "Maximum line size",
                                                           "Value with unterminated quote", "Invalid unicode"))), "")
    row = next((line[len("Original Line: "):] for line in lines if line.startswith("Original Line: ")), None)
    sample = f"; row starts {row[:80]!r}" if row is not None else ""
    return " ".join(part for part in (where, why) if part)[:300] + sample
