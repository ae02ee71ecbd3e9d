"""`deliver_files`: ordered atomic publishing recorded in the ledger, idempotent on re-runs."""

from __future__ import annotations

import threading

import pytest

from delivery_platform.delivery import OutgoingFile, deliver_files
from delivery_platform.destinations.base import AlreadyExists
from delivery_platform.destinations.local import LocalDestination
from delivery_platform.ledger import AlreadyDeliveredDifferently, Ledger, PartitionBusy


def _files(tmp_path, tag=b"v1"):
    out = []
    for name, body in (("20261120/data.json.gz", b"rows " + tag), ("20261120/data.json.gz.md5", b"sum " + tag),
                       ("20261120/20261120.done", b"")):
        path = tmp_path / "src" / tag.decode() / name.replace("/", "_")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        out.append(OutgoingFile(path, name, rows=1))
    return out


def _deliver(files, dest, ledger, run_id="r1", **kw):
    return deliver_files(vendor="lotame", deliverable="segments", partition_key="2026-11-20", files=files,
                         destination=dest, ledger=ledger, run_id=run_id, **kw)


def test_publishes_in_order_records_and_skips_a_rerun(tmp_path):
    dest, ledger = LocalDestination("lotame", tmp_path / "outbox"), Ledger(tmp_path / "ledger.sqlite")
    outcome = _deliver(_files(tmp_path), dest, ledger)
    assert outcome.action == "send"
    assert [f["name"] for f in outcome.files] == ["20261120/data.json.gz", "20261120/data.json.gz.md5",
                                                 "20261120/20261120.done"]
    delivered = ledger.delivered("lotame", "segments", "2026-11-20")
    by_start = [d.file_name for d in sorted(delivered, key=lambda d: d.id)]
    assert by_start[-1] == "20261120/20261120.done"  # the marker was published last
    assert {d.file_name for d in delivered} == {f["name"] for f in outcome.files}
    assert all(d.status == "delivered" and d.md5 and d.remote_uri.startswith("file://") for d in delivered)

    again = _deliver(_files(tmp_path), dest, ledger, run_id="r2")
    assert again.action.startswith("skipped")
    assert len(ledger.attempts("lotame", "segments", "2026-11-20")) == 3
    assert outcome.metadata()["file_count"].value == 3


def test_different_bytes_are_refused_without_the_redeliver_flag(tmp_path):
    dest, ledger = LocalDestination("lotame", tmp_path / "outbox"), Ledger(tmp_path / "ledger.sqlite")
    _deliver(_files(tmp_path), dest, ledger)
    with pytest.raises(AlreadyDeliveredDifferently, match="redeliver"):
        _deliver(_files(tmp_path, b"v2"), dest, ledger, run_id="r2")
    assert dest.open("20261120/data.json.gz").read() == b"rows v1"


@pytest.mark.fault("ledger", "run stopped after some files of a bundle", "no marker published; a re-run sends only the missing files")
def test_an_interrupted_delivery_is_completed_without_resending(tmp_path):
    dest, ledger = LocalDestination("lotame", tmp_path / "outbox"), Ledger(tmp_path / "ledger.sqlite")
    files = _files(tmp_path)
    broken = files[:2] + [OutgoingFile(tmp_path / "missing", files[2].name, md5="0" * 32, bytes=0)]
    with pytest.raises(Exception):
        _deliver(broken, dest, ledger)
    assert not dest.exists("20261120/20261120.done")
    statuses = {d.file_name: d.status for d in ledger.attempts("lotame", "segments", "2026-11-20")}
    assert statuses["20261120/20261120.done"] == "failed"
    outcome = _deliver(files, dest, ledger, run_id="r2")
    assert outcome.action == "send" and dest.exists("20261120/20261120.done")
    sends = [d for d in ledger.attempts("lotame", "segments", "2026-11-20") if d.file_name.endswith(".gz")]
    assert len(sends) == 1  # the data file was not sent twice


@pytest.mark.fault("ledger", "two runs of the same partition at once", "the second fails fast naming the first; nothing sent twice")
def test_a_second_run_of_the_same_partition_waits_its_turn(tmp_path):
    dest, ledger = LocalDestination("lotame", tmp_path / "outbox"), Ledger(tmp_path / "ledger.sqlite")
    files = _files(tmp_path)
    with ledger.claimed("lotame", "segments", "2026-11-20", "other-run"):
        with pytest.raises(PartitionBusy, match="other-run"):
            _deliver(files, dest, ledger, run_id="r2")
    assert dest.list() == []


def test_two_destinations_never_overwrite_a_final_name(tmp_path):
    dest = LocalDestination("lotame", tmp_path / "outbox")
    src = tmp_path / "a"
    src.write_bytes(b"a" * 1000)
    errors = []

    def put():
        try:
            dest.publish(src, "x/f.csv")
        except AlreadyExists as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(errors) == 3 and dest.open("x/f.csv").read() == b"a" * 1000
    assert [f.name for f in dest.list()] == ["x/f.csv"]
