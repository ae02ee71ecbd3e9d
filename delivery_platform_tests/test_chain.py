"""Chained deliverables (issue 22 item 5): the ledger's chain claims and the wait for an earlier day."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import SimpleNamespace

import dagster as dg
import pytest

from delivery_platform import chain
from delivery_platform.ledger import Ledger

V, D = "lotame", "segmentmembership"


def context(day: str, run_id: str) -> SimpleNamespace:
    """What `wait_for_earlier` reads from an asset context (no instance: liveness by process)."""
    return SimpleNamespace(partition_key=day, run_id=run_id, instance=None, log=logging.getLogger("chain"))


def test_a_day_waits_for_an_earlier_day_being_delivered_then_goes(data_dir, ledger_backend):
    ledger = Ledger()
    assert ledger.chain_claim(V, D, "2026-11-02", "run-2", after="2026-11-01") == []  # this process: alive
    done = threading.Timer(1.0, ledger.mark_partition, (V, D, "2026-11-02", "complete"), {"files": 3})
    done.start()
    started = time.monotonic()
    chain.wait_for_earlier(
        context("2026-11-03", "run-3"), ledger, V, D, lambda: "2026-11-01", timeout_s=30, poll_s=0.1
    )
    assert 0.9 < time.monotonic() - started < 10  # it waited for 2026-11-02, then went
    # it entered the chain itself: a later day now waits for it
    assert [w["partition_key"] for w in ledger.chain_waiting(V, D, "2026-11-04", after="2026-11-02")] == [
        "2026-11-03"
    ]


def test_a_day_fails_waiting_for_an_earlier_day_whose_run_ended(data_dir, ledger_backend):
    ledger = Ledger()
    ledger.chain_claim(V, D, "2026-11-02", "run-2", after=None)
    with ledger._write() as con:  # the run that entered it is gone (a failed or killed run)
        con.execute("UPDATE chain_claims SET holder = ?", (f"{socket.gethostname()}:999999999",))
    with pytest.raises(dg.Failure, match="waiting for 2026-11-02: its run run-2 ended without delivering it"):
        chain.wait_for_earlier(context("2026-11-03", "run-3"), ledger, V, D, lambda: None, timeout_s=30)
    with pytest.raises(dg.Failure, match="waiting for 2026-11-02"):
        chain.check_order(ledger, V, D, "2026-11-03", None)
    assert ledger.chain_drop(V, D, "2026-11-02")  # an operator gives it up: the next day goes
    chain.wait_for_earlier(context("2026-11-03", "run-3"), ledger, V, D, lambda: None, timeout_s=30)
    chain.check_order(ledger, V, D, "2026-11-03", None)


def test_the_wait_is_bounded_and_days_before_the_last_delivered_never_block(data_dir, ledger_backend):
    ledger = Ledger()
    ledger.chain_claim(V, D, "2026-11-02", "run-2", after=None)
    with pytest.raises(dg.Failure, match="waiting for 2026-11-02: run run-2 is still delivering it"):
        chain.wait_for_earlier(
            context("2026-11-03", "run-3"), ledger, V, D, lambda: None, timeout_s=0.3, poll_s=0.1
        )
    # once a later day reached the vendor, an undelivered earlier one is history, not a blocker
    assert ledger.chain_waiting(V, D, "2026-11-05", after="2026-11-03") == []
