"""Compression that uses every core.

`ParallelGzip` compresses fixed-size blocks on a thread pool (zlib releases the GIL) and
writes each as its own gzip member, in order. Concatenated members are one valid gzip file
(RFC 1952 section 2.2; `gzip -d`, Python, Java, Spark and pigz all read them), which is how
pigz gets its speed as well.

The deflate library is zlib-ng by default (`DEFAULT_BACKEND`; `DELIVERY_GZIP_BACKEND` picks another):
on an iSpot CSV day and a Lotame JSON-lines day it is about 1.4-1.5x faster than zlib at level 6
with output 1-2% smaller; ISA-L is faster still but its files are 35-40% larger, and vendors split
by compressed bytes (bench/gzip_choice.py, README "Benchmarks" item 7). Files compressed before the
switch (zlib) are recognised by their content (`zlib_md5`, ledger.py), not re-sent.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

DEFAULT_BLOCK = 8 << 20
BACKENDS = ("zlib", "zlib-ng", "isal")  # deflate libraries; isal is optional (the `bench` extra)
DEFAULT_BACKEND = "zlib-ng"
LEGACY_BACKEND = "zlib"  # what every gzip file was compressed with before zlib-ng became the default
BACKEND_ENV = "DELIVERY_GZIP_BACKEND"
_MODULES = {"zlib": "zlib", "zlib-ng": "zlib_ng", "isal": "isal"}


class BackendError(ValueError):
    """`DELIVERY_GZIP_BACKEND` names no deflate library, or one not installed."""


def default_backend() -> str:
    """The deflate library of every gzip the platform writes: `DELIVERY_GZIP_BACKEND`, else zlib-ng."""
    name = os.environ.get(BACKEND_ENV, "").strip() or DEFAULT_BACKEND
    return check_backend(name, source=f"{BACKEND_ENV}={name!r}")


def check_backend(name: str, source: str = "gzip backend") -> str:
    import importlib.util

    if name not in BACKENDS:
        raise BackendError(f"{source}: unknown deflate library; allowed values: {', '.join(BACKENDS)}")
    if importlib.util.find_spec(_MODULES[name]) is None:
        raise BackendError(f"{source}: the {name} library is not installed (pip install '.[bench]' "
                           f"installs isal); allowed values: {', '.join(BACKENDS)}")
    return name


def _compressobj(level: int, backend: str):
    """A gzip compressor (wbits 31: gzip header and trailer) from the chosen deflate library.
    ISA-L has levels 0-3 only: zlib levels 1-3 map to 1, 4-6 to 2, 7-9 to 3."""
    if backend == "zlib":
        return zlib.compressobj(level, zlib.DEFLATED, 31)
    if backend == "zlib-ng":
        from zlib_ng import zlib_ng

        return zlib_ng.compressobj(level, zlib_ng.DEFLATED, 31)
    if backend == "isal":
        from isal import isal_zlib

        isal_level = 0 if level == 0 else 1 if level <= 3 else 2 if level <= 6 else 3
        return isal_zlib.compressobj(isal_level, isal_zlib.DEFLATED, 31)
    raise ValueError(f"unknown gzip backend {backend!r}; one of {', '.join(BACKENDS)}")


def _gzip_member(data: bytes, level: int, backend: str = "zlib") -> bytes:
    compressor = _compressobj(level, backend)
    return compressor.compress(data) + compressor.flush()


class ParallelGzip:
    """A write-only binary stream that gzips blocks in parallel into `sink`."""

    def __init__(self, sink: BinaryIO, *, level: int = 6, threads: int | None = None, block_size: int = DEFAULT_BLOCK,
                 backend: str | None = None):
        self.sink = sink
        self.level = level
        self.backend = check_backend(backend) if backend else default_backend()
        self.block_size = block_size
        self.threads = threads or os.cpu_count() or 2
        self._pool = ThreadPoolExecutor(max_workers=self.threads)
        self._pending: list[Future] = []
        self._buffer = bytearray()
        self.raw_bytes = 0
        self.compressed_bytes = 0  # written to the sink so far
        self.pending_raw = 0  # submitted but not yet written

    def write(self, data: bytes | memoryview) -> int:
        self._buffer += data
        self.raw_bytes += len(data)
        while len(self._buffer) >= self.block_size:
            self._submit(bytes(self._buffer[: self.block_size]))
            del self._buffer[: self.block_size]
        return len(data)

    def _submit(self, block: bytes) -> None:
        future = self._pool.submit(_gzip_member, block, self.level, self.backend)
        future.raw = len(block)  # type: ignore[attr-defined]
        self._pending.append(future)
        self.pending_raw += len(block)
        # keep at most 2 blocks per thread in flight: bounded memory
        while len(self._pending) > 2 * self.threads:
            self._drain_one()

    def _drain_one(self) -> None:
        future = self._pending.pop(0)
        member = future.result()
        self.sink.write(member)
        self.compressed_bytes += len(member)
        self.pending_raw -= future.raw  # type: ignore[attr-defined]

    def settle(self) -> None:
        """Wait for the blocks in flight so `estimated_size` is exact but for the open buffer."""
        while self._pending:
            self._drain_one()

    def ratio(self) -> float:
        """Compressed/raw bytes so far (0.35, typical for CSV and JSON lines, before any block is done)."""
        done_raw = self.raw_bytes - self.pending_raw - len(self._buffer)
        return self.compressed_bytes / done_raw if self.compressed_bytes and done_raw > 0 else 0.35

    def estimated_size(self) -> int:
        """Compressed bytes written plus an estimate for what is still in flight."""
        ratio = self.compressed_bytes / max(1, self.raw_bytes - self.pending_raw - len(self._buffer)) if self.compressed_bytes else 0.35
        return int(self.compressed_bytes + (self.pending_raw + len(self._buffer)) * ratio)

    def close(self) -> None:
        if self._buffer:
            self._submit(bytes(self._buffer))
            self._buffer.clear()
        if self.raw_bytes == 0:  # an empty gzip file is still one (empty) member
            self._submit(b"")
        while self._pending:
            self._drain_one()
        self._pool.shutdown(wait=True)


def gzip_file(source: Path, target: Path, *, level: int = 6, threads: int | None = None,
              backend: str | None = None) -> Path:
    with open(source, "rb") as src, open(target, "wb") as dst:
        gz = ParallelGzip(dst, level=level, threads=threads, backend=backend)
        for chunk in iter(lambda: src.read(DEFAULT_BLOCK), b""):
            gz.write(chunk)
        gz.close()
    return target


FNAME = 0x08  # gzip header flag: the member names a file (written by Python's gzip.GzipFile)


def zlib_md5(path: Path, level: int, chunk: int = 1 << 20) -> str:
    """The MD5 the same content had when the platform gzipped it with zlib (before zlib-ng became
    the default), without writing it: each member of `path` is decompressed and compressed again
    with zlib at `level`. A `ParallelGzip` member depends only on its block of raw bytes, the level
    and the library, and the block boundaries (the block size) are the same in `path`, so this is
    byte for byte what the zlib writer made. Members whose header names a file come from
    `gzip.GzipFile` (Optimove's merged last part, sizing.py), always zlib: they are taken as they are."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        pending = b""
        while True:
            while len(pending) < 10:  # a member's fixed header
                more = handle.read(chunk)
                if not more:
                    break
                pending += more
            if not pending:
                return digest.hexdigest()
            if len(pending) < 10 or pending[:2] != b"\x1f\x8b":
                raise ValueError(f"{path}: not a gzip member at a member boundary")
            verbatim = bool(pending[3] & FNAME)
            inflate = zlib.decompressobj(31)
            deflate = None if verbatim else zlib.compressobj(level, zlib.DEFLATED, 31)
            data = pending
            while True:
                raw = inflate.decompress(data)
                if verbatim:
                    digest.update(data[: len(data) - len(inflate.unused_data)] if inflate.eof else data)
                else:
                    digest.update(deflate.compress(raw))
                if inflate.eof:
                    pending = inflate.unused_data
                    if deflate is not None:
                        digest.update(deflate.flush())
                    break
                data = handle.read(chunk)
                if not data:
                    raise ValueError(f"{path}: truncated gzip member")


def zip_file(source: Path, target: Path, *, arcname: str | None = None, level: int = 6) -> Path:
    """One member per zip (callers zip several parts in parallel threads: zlib releases the GIL)."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        zf.write(source, arcname=arcname or Path(source).name)
    return target
