"""Delimited text for vendors that choose delimiter and encoding (Idomoo): written with the csv
module, one cell at a time, so a character the encoding cannot hold is reported by row and column."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterable, Sequence

DELIMITERS = {",": ",", ";": ";", "|": "|", "tab": "\t", "\t": "\t"}
ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "windows-1252": "cp1252", "cp1252": "cp1252"}


class EncodingProblem(ValueError):
    """A value that the chosen encoding cannot represent."""


def write_delimited(path: Path, headers: Sequence[str], rows: Iterable[Sequence], *, delimiter: str = ",",
                    encoding: str = "utf-8", line_end: str = "\n", file_label: str | None = None) -> int:
    """Write `rows` under `headers` (RFC 4180 minimal quoting, no BOM). Returns the row count.

    Raises EncodingProblem naming the file, the row (1 = first data row), the column and the
    character, before anything is left under `path`.
    """
    codec = ENCODINGS.get(encoding.lower())
    if codec is None:
        raise ValueError(f"encoding {encoding!r}: expected UTF-8 or Windows-1252")
    sep = DELIMITERS.get(delimiter)
    if sep is None:
        raise ValueError(f"delimiter {delimiter!r}: expected one of , ; | tab")
    label = file_label or Path(path).name
    partial = Path(path).with_name(f".{Path(path).name}.partial")
    count = 0
    try:
        with open(partial, "wb") as handle:
            buffer = io.StringIO()
            writer = csv.writer(buffer, delimiter=sep, lineterminator=line_end, quoting=csv.QUOTE_MINIMAL)
            writer.writerow(headers)
            handle.write(buffer.getvalue().encode(codec))
            for count, row in enumerate(rows, start=1):
                cells = ["" if v is None else str(v) for v in row]
                for header, cell in zip(headers, cells):
                    try:
                        cell.encode(codec)
                    except UnicodeEncodeError as exc:
                        char = cell[exc.start]
                        raise EncodingProblem(
                            f"{label}: row {count}, column {header!r}: character {char!r} (U+{ord(char):04X}) cannot be "
                            f"written in {encoding}; value {cell[:40]!r}") from None
                buffer.seek(0)
                buffer.truncate()
                writer.writerow(cells)
                handle.write(buffer.getvalue().encode(codec))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return count
