"""The delivery ledger: idempotency decisions, claims, and many writing processes at once."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from delivery_platform.ledger import AlreadyDeliveredDifferently, Ledger, PartitionBusy, PlannedFile


def _deliver_many(path: str, worker: int, n: int) -> None:
    ledger = Ledger(path)
    for i in range(n):
        part = f"2026-11-{(i % 28) + 1:02d}"
        attempt = ledger.begin("v", f"d{worker}", part, f"f{i}.csv", bytes=i, md5=f"{i:032x}", rows=i, run_id=f"r{worker}")
        ledger.finish(attempt, "delivered")


def test_parallel_writers_never_fail_on_a_lock(tmp_path):
    path = str(tmp_path / "ledger.sqlite")
    Ledger(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_deliver_many, args=(path, w, 40)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    rows = Ledger(path).history("v", status="delivered")
    assert len(rows) == 8 * 40
    assert {r.attempt for r in rows} == {1}


def test_plan_skips_same_bytes_and_refuses_different_bytes(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    files = [PlannedFile("a.csv", "0" * 32, 10, 1), PlannedFile("b.csv", "1" * 32, 20, 2)]
    assert ledger.plan_delivery("v", "d", "2026-11-19", files).action == "send"
    for f in files:
        ledger.finish(ledger.begin("v", "d", "2026-11-19", f.name, md5=f.md5, bytes=f.bytes), "delivered")
    assert ledger.plan_delivery("v", "d", "2026-11-19", files).action == "skip"
    changed = [files[0], PlannedFile("b.csv", "2" * 32, 20, 2)]
    with pytest.raises(AlreadyDeliveredDifferently, match="redeliver"):
        ledger.plan_delivery("v", "d", "2026-11-19", changed)
    assert ledger.plan_delivery("v", "d", "2026-11-19", changed, redeliver=True).action == "redeliver"


def test_plan_completes_an_interrupted_delivery(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    files = [PlannedFile("a.json.gz", "0" * 32, 10), PlannedFile("a.json.gz.md5", "1" * 32, 5), PlannedFile("D.done", "2" * 32, 0)]
    ledger.finish(ledger.begin("v", "d", "p", "a.json.gz", md5="0" * 32), "delivered")
    ledger.finish(ledger.begin("v", "d", "p", "a.json.gz.md5", md5="1" * 32), "failed", error="connection reset")
    plan = ledger.plan_delivery("v", "d", "p", files)
    assert plan.action == "send" and [f.name for f in plan.send] == ["a.json.gz.md5", "D.done"]


def test_claim_stops_a_second_run_of_the_same_partition(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    ledger.claim("v", "d", "p", "run-1")
    with pytest.raises(PartitionBusy, match="run-1"):
        ledger.claim("v", "d", "p", "run-2")
    ledger.release("v", "d", "p", "run-1")
    ledger.claim("v", "d", "p", "run-2")


def test_attempts_are_numbered_per_file(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    first = ledger.begin("v", "d", "p", "x.csv")
    ledger.finish(first, "failed", error="boom")
    second = ledger.begin("v", "d", "p", "x.csv")
    ledger.finish(second, "delivered")
    assert [(a.attempt, a.status) for a in ledger.attempts("v", "d", "p")] == [(1, "failed"), (2, "delivered")]
    assert [d.file_name for d in ledger.find_name("v", "x.csv")] == ["x.csv", "x.csv"]
