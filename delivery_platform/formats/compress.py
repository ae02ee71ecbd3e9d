"""Compression that uses every core.

`ParallelGzip` compresses fixed-size blocks on a thread pool (zlib releases the GIL) and
writes each as its own gzip member, in order. Concatenated members are one valid gzip file
(RFC 1952 section 2.2; `gzip -d`, Python, Java, Spark and pigz all read them), which is how
pigz gets its speed as well.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

DEFAULT_BLOCK = 8 << 20


def _gzip_member(data: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: gzip header and trailer
    return compressor.compress(data) + compressor.flush()


class ParallelGzip:
    """A write-only binary stream that gzips blocks in parallel into `sink`."""

    def __init__(self, sink: BinaryIO, *, level: int = 6, threads: int | None = None, block_size: int = DEFAULT_BLOCK):
        self.sink = sink
        self.level = level
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
        future = self._pool.submit(_gzip_member, block, self.level)
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


def gzip_file(source: Path, target: Path, *, level: int = 6, threads: int | None = None) -> Path:
    with open(source, "rb") as src, open(target, "wb") as dst:
        gz = ParallelGzip(dst, level=level, threads=threads)
        for chunk in iter(lambda: src.read(DEFAULT_BLOCK), b""):
            gz.write(chunk)
        gz.close()
    return target


def zip_file(source: Path, target: Path, *, arcname: str | None = None, level: int = 6) -> Path:
    """One member per zip (callers zip several parts in parallel threads: zlib releases the GIL)."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        zf.write(source, arcname=arcname or Path(source).name)
    return target
