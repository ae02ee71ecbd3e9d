"""Streaming rendered lines from DuckDB into size-limited part files."""

from __future__ import annotations

import hashlib
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .compress import ParallelGzip

BATCH_ROWS = 200_000
SUB_BATCH_ROWS = 50_000  # how often a compressed part re-checks its size


@dataclass(frozen=True)
class Part:
    path: Path
    name: str
    rows: int
    bytes: int  # bytes on disk (compressed when compressed)
    md5: str
    raw_bytes: int  # bytes before compression
    raw_md5: str | None = None  # MD5 of the bytes before compression (the content; = md5 when not compressed)


class _HashingSink:
    """Writes and hashes what it is given. `background=True`: writing and hashing each run on a
    thread of their own (MD5 takes about 0.7 s a GB on one core, the write about half that), so
    both overlap DuckDB rendering the next batch; at most `QUEUED` batches wait in each, so memory
    stays bounded. `finish()` waits for both and re-raises what failed."""

    QUEUED = 2

    def __init__(self, handle: BinaryIO, *, background: bool = False):
        self.handle = handle
        self.md5 = hashlib.md5()
        self.size = 0
        self._error: BaseException | None = None
        self._lanes: list[tuple[queue.Queue, threading.Thread]] = []
        if background:
            for name, use in (("part-writer", self.handle.write), ("part-hasher", self.md5.update)):
                lane: queue.Queue = queue.Queue(self.QUEUED)
                thread = threading.Thread(target=self._drain, args=(lane, use), name=name, daemon=True)
                thread.start()
                self._lanes.append((lane, thread))

    def write(self, data) -> int:
        size = len(data)  # bytes: data is bytes or a byte memoryview (which keeps its buffer alive)
        self.size += size
        if not self._lanes:
            self.handle.write(data)
            self.md5.update(data)
        elif self._error is None:
            for lane, _ in self._lanes:
                lane.put(data)
        return size

    def _drain(self, lane: queue.Queue, use) -> None:
        while (data := lane.get()) is not None:
            if self._error is None:
                try:
                    use(data)
                except BaseException as exc:  # raised again by finish(), in the writing thread
                    self._error = exc

    def finish(self) -> None:
        for lane, _ in self._lanes:
            lane.put(None)
        for _, thread in self._lanes:
            thread.join()
        if self._error is not None:
            raise self._error


def stream_line_batches(con: duckdb.DuckDBPyConnection, sql: str, batch_rows: int = BATCH_ROWS) -> Iterator[pa.Array]:
    """Run `sql` (a SELECT whose first column is the rendered line) and yield Arrow string arrays."""
    reader = con.sql(sql).to_arrow_reader(batch_rows)
    for batch in reader:
        if batch.num_rows:
            yield batch.column(0)


def _buffers(array: pa.Array) -> tuple[np.ndarray, memoryview]:
    """Offsets (relative to the array) and the data buffer of a (large_)string array."""
    if array.null_count:
        raise ValueError("a rendered line is NULL: the line SQL must coalesce every value")
    kind = np.int64 if pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type) else np.int32
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=kind)[array.offset: array.offset + len(array) + 1]
    return offsets.astype(np.int64), memoryview(data_buf)


class PartWriter:
    """Writes lines into numbered parts, each under `max_bytes` (compressed size when gzipped).

    `name_for(n)` gives the file name of part n (1-based). Every part starts with `header`.
    Lines are never split across parts. Parts are written to `folder` as they are produced.
    """

    def __init__(self, folder: Path, name_for: Callable[[int], str], *, header: bytes = b"",
                 max_bytes: int | None = None, gzip_level: int | None = None, threads: int | None = None,
                 encode: Callable[[str], bytes] | None = None, single_part: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name_for = name_for
        self.header = header
        self.max_bytes = max_bytes
        self.gzip_level = gzip_level
        self.threads = threads
        self.encode = encode
        self.single_part = single_part
        self.parts: list[Part] = []
        self._handle = None
        self._sink: _HashingSink | None = None
        self._gz: ParallelGzip | None = None
        self._rows = 0
        self._raw = 0

    # --- part lifecycle -----------------------------------------------------------------------
    def _open(self) -> None:
        number = len(self.parts) + 1
        path = self.folder / self.name_for(number)
        self._handle = open(path, "wb")
        self._sink = _HashingSink(self._handle, background=self.gzip_level is None and self.encode is None)
        # smaller blocks for small targets, so a part overshoots its target by little
        block = max(64 << 10, min(8 << 20, (self.max_bytes or 1 << 40) // 4))
        self._gz = (ParallelGzip(self._sink, level=self.gzip_level, threads=self.threads, block_size=block)
                    if self.gzip_level is not None else None)
        self._rows = 0
        self._raw = 0
        self._raw_md5 = hashlib.md5() if self._gz else None
        self._path = path
        if self.header:
            self._write(self.header)

    def _write(self, data) -> None:
        (self._gz or self._sink).write(data)
        self._raw += len(data)
        if self._raw_md5 is not None:
            self._raw_md5.update(data)

    def _size(self) -> int:
        return self._gz.estimated_size() if self._gz else self._raw

    def _close(self) -> None:
        if self._handle is None:
            return
        if self._gz:
            self._gz.close()
        try:
            self._sink.finish()
        finally:
            self._handle.close()
        self.parts.append(Part(path=self._path, name=self._path.name, rows=self._rows, bytes=self._sink.size,
                               md5=self._sink.md5.hexdigest(), raw_bytes=self._raw,
                               raw_md5=(self._raw_md5 or self._sink.md5).hexdigest()))
        self._handle = None

    # --- writing ------------------------------------------------------------------------------
    def write_array(self, array: pa.Array) -> None:
        if self.encode is not None:  # transcoding path (e.g. Windows-1252): small files only
            for line in array.to_pylist():
                self.write_bytes_line(self.encode(line))
            return
        offsets, data = _buffers(array)
        start, n = 0, len(array)
        while start < n:
            if self._handle is None:
                self._open()
            if self.max_bytes is None or self.single_part:
                take = n - start if self._gz is None else min(SUB_BATCH_ROWS, n - start)
            elif self._gz is None:
                room = self.max_bytes - self._raw
                fits = int(np.searchsorted(offsets[start:] - offsets[start], room, side="right")) - 1
                take = min(fits, n - start)
                if take <= 0:
                    if self._rows == 0:
                        raise ValueError(f"one line of {offsets[start + 1] - offsets[start]} bytes does not fit in a "
                                         f"part of at most {self.max_bytes} bytes")
                    self._close()
                    continue
            else:
                # as many lines as the compressed room left should hold, judged by the ratio so far
                room = max(0.0, self.max_bytes * 0.97 - self._size()) / max(self._gz.ratio(), 0.01)
                fits = int(np.searchsorted(offsets[start:] - offsets[start], room, side="right")) - 1
                take = min(max(fits, 0), SUB_BATCH_ROWS, n - start)
                if take <= 0:
                    if self._rows == 0:
                        take = 1  # one line larger than the room: it still goes, alone
                    else:
                        self._close()
                        continue
            self._write(data[offsets[start]: offsets[start + take]])
            self._rows += take
            start += take
            if self._gz is not None and self.max_bytes and not self.single_part and self._size() >= self.max_bytes * 0.97:
                self._gz.settle()  # the estimate ran high: measure before cutting the part
                if self._size() >= self.max_bytes * 0.97:
                    self._close()

    def write_bytes_line(self, line: bytes) -> None:
        if self._handle is None:
            self._open()
        if self.max_bytes and not self.single_part and self._gz is None and self._rows and self._raw + len(line) > self.max_bytes:
            self._close()
            self._open()
        self._write(line)
        self._rows += 1

    def finish(self) -> list[Part]:
        """Close the last part; a day with no rows still yields one part (header only)."""
        if self._handle is None and not self.parts:
            self._open()
        self._close()
        return self.parts


def write_lines(con: duckdb.DuckDBPyConnection, sql: str, writer: PartWriter, batch_rows: int = BATCH_ROWS) -> list[Part]:
    for array in stream_line_batches(con, sql, batch_rows):
        writer.write_array(array)
    return writer.finish()


class BalancedSplit:
    """Where to cut lines that arrive in batches into the fewest parts that each stay at or under
    `max_bytes` (header included), with sizes as even as whole lines allow: 385 MB under 200 -> 2 x
    ~192.5, never 190 + 190 + 5. Needs only the count, total and longest line ahead (one aggregate
    query) and keeps no per-line array, so memory stays flat whatever the day's size.

    A line belongs to the part its first byte falls in when the data is cut into n equal stretches
    (n the fewest parts that fit), so every part is within one line of total/n, at most
    total/n + longest <= max_bytes - header_bytes.
    """

    def __init__(self, lines: int, total_bytes: int, longest: int, *, header_bytes: int, max_bytes: int):
        room = max_bytes - header_bytes - longest  # a part may overshoot its share by one line
        if lines and room <= 0:
            raise ValueError(f"a line of {longest} bytes does not fit in a part of at most {max_bytes} bytes")
        self.parts = max(1, -(-total_bytes // room)) if lines else 1
        self.every_line = self.parts >= lines  # only with a few, very long lines
        self.share = total_bytes / self.parts
        self._next = 1  # the next stretch boundary: share * _next
        self._seen = 0  # lines so far
        self._offset = 0  # bytes so far
        self._last_cut = 0

    def cuts(self, line_bytes: np.ndarray) -> list[int]:
        """Where, in this batch, a new part starts (indexes into the batch, never the stream's first line)."""
        n = len(line_bytes)
        if self.every_line:
            out = [i for i in range(n) if self._seen + i > 0]
        else:
            starts = self._offset + np.cumsum(line_bytes, dtype=np.int64) - line_bytes
            out = []
            while self._next < self.parts:
                i = int(np.searchsorted(starts, self.share * self._next, side="left"))
                if i >= n:
                    break  # the boundary falls in a later batch
                cut = self._seen + i
                if cut > self._last_cut:  # a line longer than a share leaves a stretch empty: no cut
                    out.append(i)
                    self._last_cut = cut
                self._next += 1
            self._offset = int(starts[-1] + line_bytes[-1]) if n else self._offset
        self._seen += n
        return out


def line_lengths(array: pa.Array) -> np.ndarray:
    """The byte length of each rendered line of an Arrow string array."""
    return np.diff(_buffers(array)[0])


def misbroken_lines(array: pa.Array, line_end: str = "\n") -> tuple[int, str | None]:
    """How many rendered lines of `array` do not hold exactly one `line_end`, at their end (a value
    with a line break in it would make a reader see two records), and the first such line.

    One count over the batch's bytes where they lie (about 10 ms per 37 MB; copying them out first
    would triple it), so a write pass checks every line it writes for a fraction of what re-reading
    the files costs; the per-line search runs only when the count is off."""
    if not len(array):
        return 0, None
    offsets, data = _buffers(array)
    ends = pc.ends_with(array, line_end)
    if len(line_end.encode()) == 1:
        found = np.count_nonzero(np.frombuffer(data, np.uint8)[offsets[0]: offsets[-1]] == ord(line_end))
    else:
        found = bytes(data[offsets[0]: offsets[-1]]).count(line_end.encode())
    if found == len(array) and pc.all(ends).as_py():
        return 0, None
    bad = pc.or_(pc.not_equal(pc.count_substring(array, line_end), 1), pc.invert(ends))
    wrong = array.filter(bad)
    return len(wrong), wrong[0].as_py()
