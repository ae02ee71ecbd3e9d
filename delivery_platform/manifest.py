"""The list of files a `_files` asset produced for a partition, handed to its `_delivery` asset.

Written as `files.json` beside the files (temp name, then rename) so the delivery step, a file
check or a person can see exactly what will be sent, in the order it must be sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import dagster as dg

from .core.files import write_atomic
from .delivery import OutgoingFile

MANIFEST = "files.json"
# kept only when set: how a file was compressed and what it holds (the ledger tells a re-compressed
# file from a changed one by them); a manifest written before they existed reads as None
OPTIONAL = ("content_md5", "gzip_level", "gzip_backend", "checksum_of")


class ManifestMissing(dg.Failure, FileNotFoundError):
    """No file list for the partition: its `_files` asset was never materialized (or was wiped).

    A permanent error for the step that reads it: retrying cannot make the files appear, so it
    fails at once (`allow_retries=False`) instead of waiting out the delivery retry policy.
    Still a `FileNotFoundError` for code that treats "no earlier manifest" as normal.
    """

    def __init__(self, path: Path):
        path = Path(path)
        # <staging>/<vendor>/<deliverable>/<partition>/files/files.json
        partition = path.parent.parent.name
        super().__init__(
            f"{path} does not exist: the files asset of this deliverable was never materialized for {partition}, "
            f"so there is no file list to deliver. Retrying cannot help: materialize the `_files` asset (and what "
            f"it depends on) for {partition} first, e.g. select it together with the `_delivery` asset or launch "
            f"the vendor's daily job.", allow_retries=False)
        self.filename = str(path)

    def __str__(self) -> str:  # the description, not OSError's "[Errno None] None: <path>"
        return self.description or ""


def write_manifest(folder: Path, files: Iterable[OutgoingFile], **extra) -> Path:
    folder = Path(folder)
    entries = [{"name": f.name, "path": str(Path(f.path).relative_to(folder)), "rows": f.rows, "bytes": f.bytes,
                "md5": f.md5, **{k: getattr(f, k) for k in OPTIONAL if getattr(f, k) is not None}} for f in files]
    return write_atomic(folder / MANIFEST, json.dumps({"files": entries, **extra}, indent=1))


def read_manifest(folder: Path) -> tuple[list[OutgoingFile], dict]:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.exists():
        raise ManifestMissing(path)
    data = json.loads(path.read_text())
    files = [OutgoingFile(folder / e["path"], e["name"], rows=e.get("rows"), md5=e.get("md5"), bytes=e.get("bytes"),
                          **{k: e.get(k) for k in OPTIONAL})
             for e in data.pop("files")]
    return files, data


def files_metadata(files: list[OutgoingFile]) -> dict:
    """Metadata the UI shows (and plots over partitions) for a set of produced files."""
    return {
        "file_count": dg.MetadataValue.int(len(files)),
        "bytes": dg.MetadataValue.int(sum(f.bytes or 0 for f in files)),
        "dagster/row_count": dg.MetadataValue.int(sum(f.rows or 0 for f in files)),
        "rows": dg.MetadataValue.int(sum(f.rows or 0 for f in files)),
        "largest_file_bytes": dg.MetadataValue.int(max((f.bytes or 0 for f in files), default=0)),
        "files": dg.MetadataValue.md("| file | bytes | rows | md5 |\n|---|---:|---:|---|\n" + "\n".join(
            f"| {f.name} | {f.bytes or 0:,} | {f.rows if f.rows is not None else ''} | `{f.md5}` |" for f in files)),
    }


def reset_folder(folder: Path) -> Path:
    """Empty a partition's files folder before producing it again (it is ours alone)."""
    folder = Path(folder)
    if folder.exists():
        for child in folder.iterdir():
            if child.is_file() or child.is_symlink():
                child.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder
