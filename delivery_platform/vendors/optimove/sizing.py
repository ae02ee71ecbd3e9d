"""Part sizes in Optimove's recommended band (optimove-data-delivery.txt, "File Size": at most
1 GB, "recommended to split large files into smaller batches ranging from 100 to 250 MB").

The writers cut parts near a target inside the band; what is left at the end may be a small last
part. `balance` merges it into the part before when that stays inside the band, so every part of
a table larger than the band's floor lands in it (a table smaller than the floor is one part).
"""

from __future__ import annotations

import gzip
import os
import uuid
from dataclasses import replace
from pathlib import Path

import duckdb

from ...formats.parts import Part
from ...core.files import file_md5
from ...core.sql import sql_literal


def _append_gzip(target: Path, source: Path, skip_header: bool, level: int) -> int:
    """Append `source`'s lines (without its header line) to `target` as a new gzip member: a
    gzip file may hold several members, read as one stream. Returns the raw bytes appended."""
    raw = 0
    with (
        gzip.open(source, "rb") as src,
        open(target, "ab") as out,
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0) as dst,
    ):
        if skip_header:
            src.readline()
        for chunk in iter(lambda: src.read(1 << 20), b""):
            dst.write(chunk)
            raw += len(chunk)
    return raw


def _merge_parquet(con: duckdb.DuckDBPyConnection, first: Path, second: Path) -> None:
    partial = first.with_name(f".{first.name}.{uuid.uuid4().hex[:8]}")
    files = f"[{sql_literal(str(first))}, {sql_literal(str(second))}]"
    con.execute(
        f"COPY (SELECT * FROM read_parquet({files})) TO {sql_literal(str(partial))} "
        "(FORMAT parquet, COMPRESSION snappy)"
    )
    os.replace(partial, first)


def _merge(first: Part, second: Part, fmt: str, con: duckdb.DuckDBPyConnection, gzip_level: int) -> Part:
    if fmt == "parquet":
        _merge_parquet(con, first.path, second.path)
        raw = first.path.stat().st_size
    else:
        appended = _append_gzip(first.path, second.path, skip_header=fmt == "csv", level=gzip_level)
        raw = first.raw_bytes + appended
    second.path.unlink()
    md5 = file_md5(first.path)
    return Part(
        path=first.path,
        name=first.name,
        rows=first.rows + second.rows,
        bytes=first.path.stat().st_size,
        md5=md5,
        raw_bytes=raw,
        # the merged content, read back once (a merge happens at most once a table: its small last part)
        raw_md5=md5 if fmt == "parquet" else file_md5(first.path, gunzip=True),
    )


def balance(
    parts: list[Part], *, low: int, high: int, fmt: str, con: duckdb.DuckDBPyConnection, gzip_level: int = 6
) -> list[Part]:
    """Merge a part under `low` with its neighbour while both fit under `high` (in order, so rows
    keep their order), then renumber the files so the names stay consecutive."""
    out: list[Part] = []
    for part in parts:
        if out and (out[-1].bytes < low or part.bytes < low) and out[-1].bytes + part.bytes <= high:
            out[-1] = _merge(out[-1], part, fmt, con, gzip_level)
        else:
            out.append(part)
    return out


def outside_band(parts: list[Part], low: int, high: int) -> list[str]:
    """Parts outside [low, high] in a table whose parts total more than `low`."""
    if sum(p.bytes for p in parts) <= low:
        return []
    return [f"{p.name}: {p.bytes:,} bytes" for p in parts if not low <= p.bytes <= high]


def renumber(parts: list[Part], name_for) -> list[Part]:
    """Consecutive names after merges (each part's number only goes down, so no name is taken)."""
    out = []
    for number, part in enumerate(parts, start=1):
        name = name_for(number)
        path = part.path.with_name(name)
        if path != part.path:
            os.replace(part.path, path)
        out.append(replace(part, path=path, name=name))
    return out
