"""The deflate library of the gzip paths (zlib-ng by default, DELIVERY_GZIP_BACKEND) and what the
ledger makes of a day delivered with zlib bytes and built again with zlib-ng: the same content,
compressed differently, is not sent twice; other content is still refused. Real files, real
libraries, `gzip -d` and `pigz -d` as the vendors' tools."""

from __future__ import annotations

import gzip
import hashlib
import logging
import random
import shutil
import subprocess

import pyarrow as pa
import pytest

from delivery_platform.core import db
from delivery_platform.delivery import OutgoingFile, deliver_files
from delivery_platform.destinations.local import LocalDestination
from delivery_platform.formats.compress import (
    BACKENDS,
    BackendError,
    ParallelGzip,
    default_backend,
    gzip_file,
    zlib_md5,
)
from delivery_platform.formats.parts import PartWriter
from delivery_platform.ledger import SCHEMA, AlreadyDeliveredDifferently, Ledger
from delivery_platform.vendors.optimove.sizing import _append_gzip

DAY = "2026-11-20"


def _lines(n: int, seed: int = 7, extra: str = "") -> list[str]:
    rng = random.Random(seed)
    segments = ["seg_travel_lux", "seg_gamers", "seg_parents", "seg_finance_savvy", "seg_auto"]
    return [f'{{"userid":"u{rng.randrange(10**9):09d}","idtype":"{rng.choice(["IDFA", "GAID", "PANO"])}",'
            f'"segments":[{{"name":"{rng.choice(segments)}","timestamp":{1795000000 + rng.randrange(86400)}}}]'
            f'{extra}}}\n' for _ in range(n)]


def _write(folder, lines: list[str], backend: str, monkeypatch, name="segmentmembership.json.gz"):
    """One gzip part through the platform's writer with `backend` as DELIVERY_GZIP_BACKEND; ~100 KB
    blocks (max_bytes // 4), so a part of ~1.3 MB raw is a dozen members."""
    monkeypatch.setenv("DELIVERY_GZIP_BACKEND", backend)
    writer = PartWriter(folder, lambda n: name, max_bytes=400_000, single_part=True, gzip_level=6, threads=2)
    writer.write_array(pa.array(lines))
    [part] = writer.finish()
    return part


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- the backend setting ------------------------------------------------------------------------
def test_zlib_ng_is_the_default_and_the_variable_is_validated(monkeypatch):
    monkeypatch.delenv("DELIVERY_GZIP_BACKEND", raising=False)
    assert default_backend() == "zlib-ng"
    monkeypatch.setenv("DELIVERY_GZIP_BACKEND", "")
    assert default_backend() == "zlib-ng"
    for name in BACKENDS:
        monkeypatch.setenv("DELIVERY_GZIP_BACKEND", name)
        assert default_backend() == name
        with open("/dev/null", "wb") as sink:
            gz = ParallelGzip(sink)
            gz.close()
        assert gz.backend == name
    monkeypatch.setenv("DELIVERY_GZIP_BACKEND", "pigz")
    with pytest.raises(BackendError) as raised:
        default_backend()
    assert "DELIVERY_GZIP_BACKEND='pigz'" in str(raised.value)
    assert "allowed values: zlib, zlib-ng, isal" in str(raised.value)
    with pytest.raises(BackendError, match="DELIVERY_GZIP_BACKEND"), open("/dev/null", "wb") as sink:
        ParallelGzip(sink)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_round_trips_with_python_gzip_and_pigz(backend, tmp_path):
    raw = "".join(_lines(30_000)).encode()
    source = tmp_path / "day.json"
    source.write_bytes(raw)
    target = gzip_file(source, tmp_path / "day.json.gz", level=6, threads=2, backend=backend)
    with open(tmp_path / "small.gz", "wb") as sink:  # many members (64 KB blocks) and an empty file
        gz = ParallelGzip(sink, level=6, threads=2, block_size=64 << 10, backend=backend)
        gz.write(raw)
        gz.close()
    with open(tmp_path / "empty.gz", "wb") as sink:
        ParallelGzip(sink, backend=backend).close()
    for path, expected in ((target, raw), (tmp_path / "small.gz", raw), (tmp_path / "empty.gz", b"")):
        assert gzip.decompress(path.read_bytes()) == expected
        assert subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout == expected
        if shutil.which("pigz"):
            assert subprocess.run(["pigz", "-dc", str(path)], capture_output=True, check=True).stdout == expected


def test_zlib_md5_is_the_md5_of_what_zlib_wrote_for_the_same_content(tmp_path, monkeypatch):
    lines = _lines(20_000)
    old = _write(tmp_path / "zlib", lines, "zlib", monkeypatch)
    new = _write(tmp_path / "ng", lines, "zlib-ng", monkeypatch)
    assert old.md5 != new.md5 and old.raw_md5 == new.raw_md5 == hashlib.md5("".join(lines).encode()).hexdigest()
    assert zlib_md5(new.path, 6) == old.md5 == zlib_md5(old.path, 6)
    assert zlib_md5(new.path, 1) != old.md5  # the level is part of the bytes
    # Optimove's merged last part: a gzip.GzipFile member appended (names a file, always zlib)
    tail = _write(tmp_path / "tail", lines[:500], "zlib", monkeypatch, name="tail.json.gz")
    for part in (old, new):
        _append_gzip(part.path, tail.path, skip_header=False, level=6)
    assert zlib_md5(new.path, 6) == _md5(old.path) != _md5(new.path)


# --- the ledger: same content, other bytes --------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_server").new_database()
    return str(tmp_path / "ledger.sqlite")


def _bundle(folder, lines, backend, monkeypatch) -> list[OutgoingFile]:
    """Lotame's three files, as lotame/assets.py builds them."""
    folder.mkdir(parents=True, exist_ok=True)
    part = _write(folder, lines, backend, monkeypatch)
    md5_path = folder / "segmentmembership.json.gz.md5"
    md5_path.write_text(f"{part.md5}  segmentmembership.json.gz\n")
    done = folder / "20261120.done"
    done.write_bytes(b"")
    return [OutgoingFile.of_part(part, "20261120/segmentmembership.json.gz", gzip_level=6),
            OutgoingFile(md5_path, "20261120/segmentmembership.json.gz.md5", md5=_md5(md5_path),
                         bytes=md5_path.stat().st_size, checksum_of="20261120/segmentmembership.json.gz"),
            OutgoingFile(done, "20261120/20261120.done", md5=_md5(done), bytes=0)]


def _legacy_delivery(target: str, files: list[OutgoingFile], dest: LocalDestination) -> None:
    """A ledger as the platform left it before content MD5s (schema version 1 only), holding a day
    delivered with zlib bytes, the files at the vendor."""
    store = db.open_store(target, None)
    store.migrate("ledger", [SCHEMA])
    with store.transaction() as con:
        for f in files:
            published = dest.publish(f.path, f.name)
            con.execute("INSERT INTO deliveries (vendor, deliverable, partition_key, file_name, remote_uri, bytes, md5,"
                        " rows, attempt, status, run_id, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1,"
                        " 'delivered', 'old-run', '2026-11-21T06:00:00.000+00:00', '2026-11-21T06:00:05.000+00:00')",
                        ("lotame", "segmentmembership", DAY, f.name, published.uri, f.bytes, f.md5, f.rows))


def _deliver(files, dest, ledger, run_id):
    return deliver_files(vendor="lotame", deliverable="segmentmembership", partition_key=DAY, files=files,
                         destination=dest, ledger=ledger, run_id=run_id,
                         logger=logging.getLogger("test_gzip_backends"))


def _columns(target: str) -> set[str]:
    with db.open_store(target, None).connect() as con:
        return {c[0] for c in con.execute("SELECT * FROM deliveries LIMIT 0").description}


def test_migrating_an_old_ledger_adds_the_content_md5_column(target, tmp_path, monkeypatch):
    dest = LocalDestination("lotame", tmp_path / "outbox")
    _legacy_delivery(target, _bundle(tmp_path / "old", _lines(100), "zlib", monkeypatch), dest)
    assert "content_md5" not in _columns(target)
    ledger = Ledger(target)
    assert "content_md5" in _columns(target)
    rows = ledger.delivered("lotame", "segmentmembership", DAY)
    assert len(rows) == 3 and all(r.content_md5 is None and r.md5 for r in rows)  # kept, content unknown
    with ledger.store.connect() as con:
        assert [tuple(r) for r in con.execute("SELECT component, version FROM schema_versions "
                                              "ORDER BY version")] == [("ledger", 1), ("ledger", 2), ("ledger", 3)]


def test_a_zlib_day_rebuilt_with_zlib_ng_is_not_sent_again(target, tmp_path, monkeypatch, caplog):
    lines = _lines(20_000)
    dest = LocalDestination("lotame", tmp_path / "outbox")
    old = _bundle(tmp_path / "old", lines, "zlib", monkeypatch)
    _legacy_delivery(target, old, dest)
    at_vendor = {f.name: dest.open(f.name).read() for f in old}

    ledger = Ledger(target)
    new = _bundle(tmp_path / "new", lines, "zlib-ng", monkeypatch)
    assert new[0].md5 != old[0].md5 and new[1].md5 != old[1].md5  # other gzip bytes, other checksum file
    with caplog.at_level(logging.INFO, logger="test_gzip_backends"):
        outcome = _deliver(new, dest, ledger, "new-run")
    assert outcome.action == "skipped: already delivered with the same content"
    said = " ".join(r.getMessage() for r in caplog.records)
    assert ("same content as delivered on 2026-11-21T06:00:05, compressed with gzip -6 (zlib-ng) now "
            "(2 of 3 files with other bytes): nothing re-sent") in said, said
    assert {f.name: dest.open(f.name).read() for f in old} == at_vendor  # the vendor's files untouched
    assert len(ledger.attempts("lotame", "segmentmembership", DAY)) == 3  # nothing attempted
    # what was checked is recorded: the next re-run compares content MD5s, no re-compression
    learned = {d.file_name: d.content_md5 for d in ledger.delivered("lotame", "segmentmembership", DAY)}
    assert learned["20261120/segmentmembership.json.gz"] == new[0].content_md5
    assert _deliver(new, dest, ledger, "third-run").action == "skipped: already delivered with the same content"
    # and a day first delivered now records its content MD5
    monkeypatch.setenv("DELIVERY_GZIP_BACKEND", "zlib-ng")
    fresh = [OutgoingFile(f.path, f.name.replace("20261120/", "x/"), rows=f.rows, md5=f.md5, bytes=f.bytes,
                          content_md5=f.content_md5, gzip_level=f.gzip_level, gzip_backend=f.gzip_backend)
             for f in new[:1]]
    deliver_files(vendor="lotame", deliverable="other", partition_key=DAY, files=fresh, destination=dest,
                  ledger=ledger, run_id="r")
    [row] = ledger.delivered("lotame", "other", DAY)
    assert row.content_md5 == hashlib.md5("".join(lines).encode()).hexdigest()


def test_other_content_is_still_refused_after_the_switch(target, tmp_path, monkeypatch):
    dest = LocalDestination("lotame", tmp_path / "outbox")
    lines = _lines(20_000)
    _legacy_delivery(target, _bundle(tmp_path / "old", lines, "zlib", monkeypatch), dest)
    ledger = Ledger(target)
    changed = lines[:-1] + [lines[-1].replace("}]", "},{\"name\":\"seg_new\",\"timestamp\":1795000000}]")]
    with pytest.raises(AlreadyDeliveredDifferently, match=r"already delivered \(3 files.*new files differ "
                                                           r"\(2 changed, 0 new\).*redeliver"):
        _deliver(_bundle(tmp_path / "new", changed, "zlib-ng", monkeypatch), dest, ledger, "new-run")
    # rows with a content MD5 too: delivered with zlib-ng now, changed content later
    fresh = _bundle(tmp_path / "fresh", lines, "zlib-ng", monkeypatch)
    other = LocalDestination("lotame", tmp_path / "outbox-b")
    deliver_files(vendor="lotame", deliverable="b", partition_key=DAY, files=fresh, destination=other,
                  ledger=Ledger(target), run_id="r1")
    recorded = {d.file_name.split("/")[1]: d.content_md5 for d in Ledger(target).delivered("lotame", "b", DAY)}
    assert recorded["segmentmembership.json.gz"] == fresh[0].content_md5
    assert recorded["segmentmembership.json.gz.md5"] and recorded["20261120.done"] is None  # bytes are content
    later = _bundle(tmp_path / "later", changed, "zlib", monkeypatch)
    with pytest.raises(AlreadyDeliveredDifferently, match="2 changed, 0 new"):
        deliver_files(vendor="lotame", deliverable="b", partition_key=DAY, files=later, destination=other,
                      ledger=Ledger(target), run_id="r2")
    same_again = _bundle(tmp_path / "again", lines, "zlib", monkeypatch)  # back to zlib: same content
    assert deliver_files(vendor="lotame", deliverable="b", partition_key=DAY, files=same_again, destination=other,
                         ledger=Ledger(target), run_id="r3").action == "skipped: already delivered with the same content"
