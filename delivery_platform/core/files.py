"""Local files: one home for checksums and the write-temp-then-rename idiom.

A reader (a sensor, a later step, another run) must never see half a file: everything the
platform writes goes to a hidden temporary name in the same folder and is renamed into place,
which is atomic on one file system.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

CHUNK = 1 << 20


def file_md5(path: Path, *, gunzip: bool = False) -> str:
    """MD5 of a file's bytes, or of its content before compression (`gunzip`)."""
    digest = hashlib.md5()
    with (gzip.open if gunzip else open)(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stream_md5(stream: BinaryIO) -> tuple[int, str]:
    """(bytes, MD5) of what is left in `stream`, read in chunks."""
    digest = hashlib.md5()
    size = 0
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def partial_path(target: Path) -> Path:
    """A hidden temporary name beside `target`, unique to this writer."""
    target = Path(target)
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes `target` in one rename, on error it
    is removed and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def write_atomic(target: Path, content: bytes | str) -> Path:
    """Write `content` to `target` atomically (bytes as they are, text as UTF-8)."""
    with atomic_path(target) as partial:
        data = content.encode() if isinstance(content, str) else content
        partial.write_bytes(data)
    return Path(target)
