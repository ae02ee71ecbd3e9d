"""Line rendering, size-split parts and parallel gzip."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import duckdb
import pytest

from delivery_platform.formats import PartWriter, csv_header, csv_line_sql, json_line_sql, write_lines
from delivery_platform.formats.lines import csv_line_bytes_sql

ROWS = "SELECT i AS id, 'v\"' || i AS q, CASE WHEN i % 3 = 0 THEN NULL ELSE 'a,b' END AS c, " \
       "CASE WHEN i % 5 = 0 THEN 'line' || chr(10) || 'break' ELSE 'plain' END AS n FROM range(1000) t(i)"


def test_quote_all_data_with_an_unquoted_header(tmp_path):
    con = duckdb.connect()
    cols = ["id", "q", "c", "n"]
    writer = PartWriter(tmp_path, lambda n: f"p{n}.csv", header=csv_header(cols).encode())
    parts = write_lines(con, f"SELECT {csv_line_sql(cols, quoting='all')} FROM ({ROWS}) ORDER BY id", writer)
    data = parts[0].path.read_bytes()
    assert data.startswith(b'id,q,c,n\n"0","v""0","","line\nbreak"\n"1","v""1","a,b","plain"\n')
    assert list(csv.reader(io.StringIO(data.decode())))[1:3] == [["0", 'v"0', "", "line\nbreak"], ["1", 'v"1', "a,b", "plain"]]
    assert parts[0].rows == 1000


def test_minimal_quoting_crlf_round_trips_through_the_csv_module(tmp_path):
    con = duckdb.connect()
    cols = ["id", "q", "c", "n"]
    writer = PartWriter(tmp_path, lambda n: "p.csv", header=csv_header(cols, line_end="\r\n").encode())
    parts = write_lines(con, f"SELECT {csv_line_sql(cols, line_end=chr(13) + chr(10))} FROM ({ROWS}) ORDER BY id", writer)
    text = parts[0].path.read_bytes().decode()
    assert text.startswith("id,q,c,n\r\n0,\"v\"\"0\",,\"line\nbreak\"\r\n1,\"v\"\"1\",\"a,b\",plain\r\n")
    back = list(csv.reader(io.StringIO(text, newline="")))
    assert len(back) == 1001 and back[2] == ["1", 'v"1', "a,b", "plain"]


def test_parts_stay_under_the_limit_with_the_header_in_each_and_no_split_line(tmp_path):
    con = duckdb.connect()
    cols = ["id", "q", "c", "n"]
    header = csv_header(cols).encode()
    writer = PartWriter(tmp_path, lambda n: f"p_{n:03d}.csv", header=header, max_bytes=4000)
    parts = write_lines(con, f"SELECT {csv_line_sql(cols, quoting='all')} FROM ({ROWS}) ORDER BY id", writer, batch_rows=97)
    assert len(parts) > 5
    ids = []
    for part in parts:
        data = part.path.read_bytes()
        assert len(data) <= 4000 and data.startswith(header) and data.endswith(b"\n")
        rows = list(csv.reader(io.StringIO(data.decode())))[1:]
        assert len(rows) == part.rows
        ids += [int(r[0]) for r in rows]
    assert ids == list(range(1000))


def test_parallel_gzip_parts_are_valid_gzip_and_roughly_on_target(tmp_path):
    con = duckdb.connect()
    big = "SELECT i AS id, md5(i::VARCHAR) AS h FROM range(200000) t(i)"
    writer = PartWriter(tmp_path, lambda n: f"p_{n:03d}.json.gz", max_bytes=400_000, gzip_level=6, threads=2)
    parts = write_lines(con, f"SELECT {json_line_sql(['id', 'h'])} FROM ({big}) ORDER BY id", writer)
    assert len(parts) >= 3
    seen = 0
    for part in parts:
        assert part.bytes <= 400_000 * 1.25
        lines = gzip.decompress(part.path.read_bytes()).decode().splitlines()
        assert len(lines) == part.rows
        assert json.loads(lines[0])["id"] == seen
        seen += len(lines)
    assert seen == 200000


def test_an_empty_day_still_gives_one_header_only_part(tmp_path):
    con = duckdb.connect()
    writer = PartWriter(tmp_path, lambda n: "empty.csv", header=b"a,b\n")
    parts = write_lines(con, f"SELECT {csv_line_sql(['a', 'b'])} FROM (SELECT 1 AS a, 2 AS b) WHERE false", writer)
    assert len(parts) == 1 and parts[0].rows == 0 and parts[0].path.read_bytes() == b"a,b\n"


def test_line_bytes_are_counted_without_building_the_line():
    """The size plan of a split counts each line's bytes from its values: it must agree with the line."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a VARCHAR, b VARCHAR, n DECIMAL(12,2), d TIMESTAMP)")
    con.execute("""INSERT INTO t VALUES ('plain', 'say "hi", twice ""', 12.30, '2026-11-19 08:00:00'),
                   (NULL, 'line\nbreak\rcr', NULL, NULL), ('café ☕', '', -1, '2026-01-01'),
                   ('"', ',', 0, NULL), ('', NULL, 99999.99, '2026-12-31 23:59:59')""")
    for quoting in ("all", "minimal", "none"):
        for delimiter, line_end in ((",", "\n"), ("|", "\r\n"), ("\t", "\n")):
            args = dict(quoting=quoting, delimiter=delimiter, line_end=line_end)
            rows = con.execute(f"SELECT strlen({csv_line_sql(['a', 'b', 'n', 'd'], **args)}), "
                               f"{csv_line_bytes_sql(['a', 'b', 'n', 'd'], **args)} FROM t").fetchall()
            assert all(built == counted for built, counted in rows), (args, rows)


@pytest.mark.parametrize("lines,line_end,expected", [
    (["a\n", "b\n"], "\n", (0, None)),
    (["a\nx\n", "b\n", "c"], "\n", (2, "a\nx\n")),  # a line break inside, and no line end
    (["a\n", "\n", "b\n"], "\n", (0, None)),  # an empty record is still one line
    (["a\r\n", "b\r\n"], "\r\n", (0, None)),
    (["a\r\n", "b\n"], "\r\n", (1, "b\n")),
])
def test_misbroken_lines_counts_lines_that_are_not_exactly_one_line(lines, line_end, expected):
    import pyarrow as pa

    from delivery_platform.formats.parts import misbroken_lines

    assert misbroken_lines(pa.array(lines), line_end) == expected
    sliced = pa.array(["x\ny\n"] + lines).slice(1)  # a slice of a batch: only its own bytes count
    assert misbroken_lines(sliced, line_end) == expected


def test_a_failed_write_on_the_background_writer_is_raised_in_the_writing_thread():
    """Parts are written and hashed on threads of their own: a disk that fails (here /dev/full, no space left)
    still fails the write, in the caller, and never reports a part as written."""
    import errno

    import pyarrow as pa

    writer = PartWriter(Path("/dev"), lambda n: "full", single_part=True)
    with pytest.raises(OSError) as failed:
        for _ in range(4):
            writer.write_array(pa.array(["x" * 1000 + "\n"] * 2000))
        writer.finish()
    assert failed.value.errno == errno.ENOSPC and writer.parts == []


def test_the_background_writer_gives_the_bytes_and_md5_of_a_plain_write(tmp_path):
    import hashlib

    import pyarrow as pa

    lines = [f"line {i}\n" for i in range(100_000)]
    writer = PartWriter(tmp_path, lambda n: f"p{n}.csv", header=b"h\n", max_bytes=300_000)
    for start in range(0, len(lines), 7_000):
        writer.write_array(pa.array(lines[start:start + 7_000]))
    parts = writer.finish()
    assert b"".join(p.path.read_bytes()[2:] for p in parts) == "".join(lines).encode()
    for p in parts:
        assert p.md5 == hashlib.md5(p.path.read_bytes()).hexdigest() and p.bytes == p.path.stat().st_size <= 300_000
