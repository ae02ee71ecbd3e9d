"""The delivery ledger: idempotency decisions, claims, and many writing processes at once, on both
engines (a SQLite file; a real PostgreSQL on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from delivery_platform.core import db
from delivery_platform.ledger import (
    AlreadyDeliveredDifferently,
    FileContents,
    Ledger,
    LedgerError,
    PartitionBusy,
    PlannedFile,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    """Where the ledger lives: a SQLite file, or a fresh PostgreSQL database (its URL)."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_server").new_database()
    return str(tmp_path / "l.sqlite")


def _deliver_many(path: str, worker: int, n: int) -> None:
    ledger = Ledger(path)
    for i in range(n):
        part = f"2026-11-{(i % 28) + 1:02d}"
        attempt = ledger.begin("v", f"d{worker}", part, f"f{i}.csv", bytes=i, md5=f"{i:032x}", rows=i, run_id=f"r{worker}")
        ledger.finish(attempt, "delivered")


def test_parallel_writers_never_fail_on_a_lock(target):
    path = target
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


def test_plan_skips_same_bytes_and_refuses_different_bytes(target):
    ledger = Ledger(target)
    files = [PlannedFile("a.csv", "0" * 32, 10, 1), PlannedFile("b.csv", "1" * 32, 20, 2)]
    assert ledger.plan_delivery("v", "d", "2026-11-19", files).action == "send"
    for f in files:
        ledger.finish(ledger.begin("v", "d", "2026-11-19", f.name, md5=f.md5, bytes=f.bytes), "delivered")
    assert ledger.plan_delivery("v", "d", "2026-11-19", files).action == "skip"
    changed = [files[0], PlannedFile("b.csv", "2" * 32, 20, 2)]
    with pytest.raises(AlreadyDeliveredDifferently, match="redeliver"):
        ledger.plan_delivery("v", "d", "2026-11-19", changed)
    assert ledger.plan_delivery("v", "d", "2026-11-19", changed, redeliver=True).action == "redeliver"


def test_plan_completes_an_interrupted_delivery(target):
    ledger = Ledger(target)
    files = [PlannedFile("a.json.gz", "0" * 32, 10), PlannedFile("a.json.gz.md5", "1" * 32, 5), PlannedFile("D.done", "2" * 32, 0)]
    ledger.finish(ledger.begin("v", "d", "p", "a.json.gz", md5="0" * 32), "delivered")
    ledger.finish(ledger.begin("v", "d", "p", "a.json.gz.md5", md5="1" * 32), "failed", error="connection reset")
    plan = ledger.plan_delivery("v", "d", "p", files)
    assert plan.action == "send" and [f.name for f in plan.send] == ["a.json.gz.md5", "D.done"]


def test_claim_stops_a_second_run_of_the_same_partition(target):
    ledger = Ledger(target)
    ledger.claim("v", "d", "p", "run-1")
    with pytest.raises(PartitionBusy, match="run-1"):
        ledger.claim("v", "d", "p", "run-2")
    ledger.release("v", "d", "p", "run-1")
    ledger.claim("v", "d", "p", "run-2")


def test_attempts_are_numbered_per_file(target):
    ledger = Ledger(target)
    first = ledger.begin("v", "d", "p", "x.csv")
    ledger.finish(first, "failed", error="boom")
    second = ledger.begin("v", "d", "p", "x.csv")
    ledger.finish(second, "delivered")
    assert [(a.attempt, a.status) for a in ledger.attempts("v", "d", "p")] == [(1, "failed"), (2, "delivered")]
    assert [d.file_name for d in ledger.find_name("v", "x.csv")] == ["x.csv", "x.csv"]


def test_contents_empty_partitions_notes_and_chains_on_both_engines(target):
    ledger = Ledger(target)
    ledger.record_contents("v", "d", FileContents("p", "f1.csv", None, "k9", 10))
    ledger.record_contents("v", "d", FileContents("p", "f1.csv", None, "k9", 10))  # the same: accepted
    with pytest.raises(LedgerError, match="refusing to reuse the name"):
        ledger.record_contents("v", "d", FileContents("p", "f1.csv", "k9", "k20", 11))
    assert ledger.contents("v", "d", "p") == [FileContents("p", "f1.csv", None, "k9", 10)]
    ledger.record_empty("v", "d", "q", reason="no events", run_id="r")
    assert ledger.empty_reason("v", "d", "q") == "no events" and ledger.partition_state("v", "d", "q") == "complete"
    ledger.clear_empty("v", "d", "q")
    assert ledger.empty_reason("v", "d", "q") is None
    attempt = ledger.begin("v", "d", "p", "f1.csv", bytes=5_000_000_000, md5="0" * 32)  # over 2**31: BIGINT
    ledger.finish(attempt, "delivered")
    ledger.note(attempt, "accepted earlier")
    ledger.note(attempt, "accepted earlier: attempt 1")  # a note is replaced, never doubled
    assert ledger.notes("v") == {attempt: "accepted earlier: attempt 1"}
    assert ledger.delivered("v", "d", "p")[0].bytes == 5_000_000_000
    # chains: days enter in order and wait for the undelivered earlier ones
    assert ledger.chain_claim("v", "c", "2026-11-02", "run-2", after=None) == []
    waiting = ledger.chain_claim("v", "c", "2026-11-03", "run-3", after=None)
    assert [w["partition_key"] for w in waiting] == ["2026-11-02"] and waiting[0]["run_id"] == "run-2"
    ledger.mark_partition("v", "c", "2026-11-02", "complete", files=1)
    assert ledger.chain_waiting("v", "c", "2026-11-03", after=None) == []
    assert ledger.partition_states("v", "c") == {"2026-11-02": "complete"}
    assert ledger.chain_drop("v", "c", "2026-11-03") and not ledger.chain_drop("v", "c", "2026-11-03")


def test_the_schema_is_versioned_and_created_once(target):
    Ledger(target)
    Ledger(target)
    store = Ledger(target).store
    with store.connect() as con:
        rows = [tuple(r) for r in con.execute("SELECT component, version FROM schema_versions "
                                              "ORDER BY component, version")]
    assert rows == [("ledger", 1), ("ledger", 2), ("ledger", 3)]  # 2: deliveries.content_md5; 3: reserved_names


def test_a_name_is_reserved_for_one_partition_only(target):
    """Two days building at once (a backfill) must not both take a made-up name (Idomoo's time of day)."""
    first, second = Ledger(target), Ledger(target)  # two run processes sharing the ledger
    assert first.reserve_name("idomoo", "2026-11-02", "acme_welcome_20261121_090000_01")
    assert not second.reserve_name("idomoo", "2026-11-03", "acme_welcome_20261121_090000_01")
    assert second.reserve_name("idomoo", "2026-11-03", "acme_welcome_20261121_090000_02")
    assert first.reserve_name("idomoo", "2026-11-02", "acme_welcome_20261121_090000_01")  # its own, again
    assert second.reserve_name("lotame", "2026-11-03", "acme_welcome_20261121_090000_01")  # per vendor


CLAIM_AND_HANG = textwrap.dedent("""
    import sys, time
    from delivery_platform.ledger import Ledger
    ledger = Ledger(sys.argv[1])
    ledger.claim("v", "d", "p", "run-dead")
    ledger.begin("v", "d", "p", "a.csv", md5="0" * 32, run_id="run-dead")
    print("claimed", flush=True)
    time.sleep(600)
""")


def test_a_dead_node_s_claim_is_taken_over_after_its_lease_not_before(target, monkeypatch):
    """A holder on another node (its pid means nothing here) keeps the claim while it renews it;
    killed, its claim lapses after one lease and the next run takes it over."""
    env = {**os.environ, "DELIVERY_NODE_NAME": "node-a", "DELIVERY_LEASE_SECONDS": "1.5"}
    child = subprocess.Popen([sys.executable, "-c", CLAIM_AND_HANG, target], env=env, stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True)
    try:
        assert child.stdout.readline().strip() == "claimed"
        monkeypatch.setenv("DELIVERY_NODE_NAME", "node-b")
        ledger = Ledger(target)
        time.sleep(3)  # two leases: the holder's renewals keep it
        with pytest.raises(PartitionBusy, match="run-dead .node-a:"):
            ledger.claim("v", "d", "p", "run-next")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        killed = time.monotonic()
        while True:
            try:
                abandoned = ledger.claim("v", "d", "p", "run-next")
                break
            except PartitionBusy:
                assert time.monotonic() - killed < 10, "the dead node's claim never lapsed"
                time.sleep(0.1)
        assert time.monotonic() - killed < 3  # within about one lease of the kill
        assert [a.file_name for a in abandoned] == ["a.csv"]
        [attempt] = ledger.attempts("v", "d", "p")
        assert attempt.status == "failed" and "its claim expired" in attempt.error
        ledger.release("v", "d", "p", "run-next")
    finally:
        if child.poll() is None:
            child.kill()


def test_a_run_that_lost_its_lease_sends_no_further_file(target, monkeypatch):
    monkeypatch.setenv("DELIVERY_LEASE_SECONDS", "0.5")
    stalled, other = Ledger(target), Ledger(target)
    stalled.claim("v", "d", "p", "run-1")
    stalled._renewals[("v", "d", "p")].stopped.set()  # its renewals stop, as on a node that froze
    time.sleep(0.8)
    monkeypatch.setenv("DELIVERY_NODE_NAME", "elsewhere")  # a run on another node takes it over
    other.claim("v", "d", "p", "run-2")
    with pytest.raises(PartitionBusy, match="run-1 lost its claim .* now held by run run-2"):
        stalled.begin("v", "d", "p", "b.csv", run_id="run-1")
    other.release("v", "d", "p", "run-2")


def _race(target: str, run_id: str, ready, out) -> None:
    ledger = Ledger(target)
    ready.wait(60)  # every process connected: they claim at once
    try:
        ledger.claim("v", "d", "race", run_id)
        out.put(run_id)
        time.sleep(1)
    except PartitionBusy:
        out.put(None)


def test_claims_launched_at_once_in_many_processes_have_one_winner(target):
    Ledger(target)
    ctx = mp.get_context("spawn")
    out, ready = ctx.Queue(), ctx.Barrier(4)
    procs = [ctx.Process(target=_race, args=(target, f"run-{i}", ready, out)) for i in range(4)]
    for p in procs:
        p.start()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert len([g for g in got if g]) == 1


def test_a_postgres_url_never_shows_its_password(postgres_server):
    url = postgres_server.new_database()
    assert postgres_server.password in url
    ledger = Ledger(url)
    assert postgres_server.password not in ledger.describe() and "***" in ledger.describe()
    wrong = url.replace(postgres_server.password, "not-the-password-42")
    with pytest.raises(db.StoreError) as raised:
        Ledger(wrong)
    assert "not-the-password-42" not in str(raised.value) and "password authentication failed" in str(raised.value)
    assert db.redact("postgresql://u:s3cret@h/db?password=x&sslmode=require") == \
        "postgresql://u:***@h/db?password=***&sslmode=require"


def test_the_environment_chooses_the_engine(tmp_path, monkeypatch, postgres_server):
    monkeypatch.setenv("DELIVERY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DELIVERY_LEDGER_PATH", raising=False)
    monkeypatch.delenv("DELIVERY_LEDGER_URL", raising=False)
    assert Ledger().store.kind == "sqlite" and Ledger().path == tmp_path / "ledger.sqlite"
    node = tmp_path / "node"
    monkeypatch.setenv("DELIVERY_DATA_DIR", str(node))
    monkeypatch.setenv("DELIVERY_LEDGER_URL", postgres_server.new_database())
    ledger = Ledger()
    assert ledger.store.kind == "postgresql" and ledger.path == node / "ledger.sqlite"
    ledger.finish(ledger.begin("v", "d", dt.date(2026, 11, 19).isoformat(), "x.csv"), "delivered")
    assert not (node / "ledger.sqlite").exists() and not (node / "alerts.sqlite").exists()


def test_renewing_claims_leave_no_connection_open(postgres_server, monkeypatch):
    import psycopg

    url = postgres_server.new_database()
    monkeypatch.setenv("DELIVERY_LEASE_SECONDS", "0.6")  # renewed every 0.2 s

    def connections() -> int:
        with psycopg.connect(url) as con:
            return con.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND pid <> pg_backend_pid()").fetchone()[0]

    ledger = Ledger(url)
    before = connections()
    for i in range(5):
        ledger.claim("v", "d", f"p{i}", "run")
        time.sleep(0.5)  # renewed twice, from the renewal thread's own connection
        ledger.release("v", "d", f"p{i}", "run")
    time.sleep(0.5)  # each renewal thread ends at its next beat
    assert connections() <= before
