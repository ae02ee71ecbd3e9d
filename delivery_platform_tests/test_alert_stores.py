"""The alert log and the alert outbox on both engines: beside the ledger in SQLite files, or in the
ledger's PostgreSQL database when DELIVERY_LEDGER_URL is set (every node sees what another sent)."""

from __future__ import annotations

import multiprocessing as mp

from delivery_platform.alerts.model import Alert
from delivery_platform.alerts.outbox import AlertOutbox
from delivery_platform.alerts.sensors import AlertLog


def _claim(key: str, out) -> None:
    out.put(AlertLog().claim(key))


def test_an_alert_key_is_claimed_once_across_processes_and_check_states_change_once(ledger_backend, data_dir):
    ctx = mp.get_context("spawn")  # other processes, as the daemon's sensors and the runs are
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim, args=("deadline:lotame:segmentmembership:2026-11-19", out)) for _ in range(3)]
    for p in procs:
        p.start()
    won = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert sorted(won) == [False, False, True]
    log = AlertLog()
    assert (log.path is None) == (ledger_backend == "postgresql")  # no alerts.sqlite with the URL
    assert not (data_dir / "alerts.sqlite").exists() or ledger_backend == "sqlite"
    assert log.set_failing("lotame/segment_memberships:spec:2026-11-19", True, "r1") is True
    assert log.set_failing("lotame/segment_memberships:spec:2026-11-19", True, "r2") is False
    assert log.failing("lotame/%", "preflight/lotame/%") == ["lotame/segment_memberships:spec:2026-11-19"]
    assert log.set_failing("lotame/segment_memberships:spec:2026-11-19", False, "r3") is True
    assert log.failing("lotame/%") == []
    assert log.sent_keys("deadline:lotame:%") == ["deadline:lotame:segmentmembership:2026-11-19"]


def test_the_outbox_queues_once_leases_and_backs_off(ledger_backend, data_dir):
    outbox, alert = AlertOutbox(), Alert("deadline_missed", "lotame", "late", partition="2026-11-19")
    assert outbox.enqueue("k1", ["slack", "email"], alert, now=1000.0) == 2
    assert outbox.enqueue("k1", ["slack", "email"], alert, now=1001.0) == 0  # the same alert: queued once
    due = outbox.take_due(["slack", "email"], now=1000.5)
    assert sorted((k, s) for k, s, _ in due) == [("k1", "email"), ("k1", "slack")] and due[0][2] == alert
    assert AlertOutbox().take_due(["slack", "email"], now=1001.0) == []  # leased: another sender waits
    outbox.sent("k1", "slack", now=1002.0)
    outbox.failed("k1", "email", "SMTP down", now=1002.0)
    assert outbox.take_due(["email"], now=1010.0) == []  # backing off 30 s
    assert [(k, s) for k, s, _ in outbox.take_due(["email"], now=1033.0)] == [("k1", "email")]
    stuck = outbox.stuck(10, now=2000.0)
    assert [(s["sink"], s["alerts"], s["last_error"]) for s in stuck] == [("email", 1, "SMTP down")]
    assert {r["sink"]: r["status"] for r in outbox.rows()} == {"slack": "sent", "email": "sending"}


def _open_fresh(path: str, start, out) -> None:
    from delivery_platform.core import sqlite

    start.wait()
    try:
        with sqlite.connect(path, 10) as con, sqlite.transaction(con):
            con.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)")
        out.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        out.put(repr(exc))


def test_processes_opening_a_new_store_together_all_get_in(tmp_path):
    """A fresh SQLite file switched to WAL by several processes at once: SQLite refuses the switch at once
    ("database is locked") instead of waiting; `core/sqlite.connect` must wait for it (it failed 3 times in
    30 tries of 6 processes before it did)."""
    ctx = mp.get_context("fork")  # only the standard library runs in the children
    failures = []
    for trial in range(30):
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open_fresh, args=(str(tmp_path / f"s{trial}.sqlite"), start, out))
                 for _ in range(6)]
        for p in procs:
            p.start()
        start.set()
        failures += [r for r in (out.get(timeout=60) for _ in procs) if r != "ok"]
        for p in procs:
            p.join(30)
    assert failures == []
