"""Chained deliverables: files that build on the file before (Lotame deltas) go out in partition
order, one at a time, whatever the run queue does (issue 22 item 5).

A run enters its partition in the ledger's chain (`chain_claims`) before it computes anything.
An earlier partition still in the chain and not delivered makes it wait while that partition's
run is in progress, and fail with "waiting for <day>" once that run has ended without delivering
it. The delivery step checks the order again, under the chain's own claim, just before it sends.
"""

from __future__ import annotations

import datetime as dt
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import dagster as dg

from .ledger import Ledger, PartitionBusy, _holder_gone

IN_PROGRESS = {
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
}
LEASE = dt.timedelta(hours=2)  # a run not found in this instance counts as live this long at most


def _in_progress(instance: dg.DagsterInstance | None, entry: dict) -> bool:
    run = instance.get_run_by_id(entry["run_id"]) if instance is not None else None
    if run is not None:
        return run.status in IN_PROGRESS
    # a run of another instance (a CLI run, a test process): judge by its process and age
    age = dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(entry["claimed_at"])
    return not _holder_gone(entry["holder"]) and age < LEASE


def _drop_hint(vendor: str, deliverable: str, day: str) -> str:
    return (
        f"deliver {day} first (re-run it), or, if it must never be sent, take it out of the chain with "
        f"Ledger().chain_drop({vendor!r}, {deliverable!r}, {day!r}) and the next file covers its changes"
    )


def wait_for_earlier(
    context,
    ledger: Ledger,
    vendor: str,
    deliverable: str,
    last_delivered: Callable[[], str | None],
    timeout_s: float,
    poll_s: float = 1.0,
) -> None:
    """Enter the run's partition in the chain; wait while an earlier one is being delivered; fail
    with "waiting for <day>" when an earlier one's run ended without delivering it, or on timeout."""
    key, started, told = context.partition_key, time.monotonic(), None
    while True:
        waiting = ledger.chain_claim(vendor, deliverable, key, context.run_id, last_delivered())
        if not waiting:
            return
        first = waiting[0]
        day, run = first["partition_key"], first["run_id"]
        what = f"{vendor}/{deliverable} {key}: waiting for {day}"
        if not _in_progress(context.instance, first):
            raise dg.Failure(
                f"{what}: its run {run} ended without delivering it, and {key} builds on it; "
                f"{_drop_hint(vendor, deliverable, day)}",
                allow_retries=False,
            )
        if time.monotonic() - started > timeout_s:
            raise dg.Failure(
                f"{what}: run {run} is still delivering it after {timeout_s:.0f} s; "
                f"re-run {key} once {day} is delivered",
                allow_retries=False,
            )
        if told != day:
            context.log.info(f"{key}: waiting for {day} (run {first['run_id']}) to be delivered first")
            told = day
        time.sleep(poll_s)


@contextmanager
def delivering(
    ledger: Ledger, vendor: str, deliverable: str, run_id: str, timeout_s: float, poll_s: float = 0.5
) -> Iterator[None]:
    """Hold the chain's own claim while one partition's order is checked and its files sent: a
    second delivery of the chain waits for it (up to `timeout_s`)."""
    started = time.monotonic()
    while True:
        try:
            ledger.claim(vendor, f"{deliverable}#chain", "chain", run_id)
            break
        except PartitionBusy:
            if time.monotonic() - started > timeout_s:
                raise
            time.sleep(poll_s)
    try:
        yield
    finally:
        ledger.release(vendor, f"{deliverable}#chain", "chain", run_id)


def check_order(ledger: Ledger, vendor: str, deliverable: str, key: str, last_delivered: str | None) -> None:
    """At delivery: refuse when an earlier partition of the chain is still undelivered."""
    waiting = ledger.chain_waiting(vendor, deliverable, key, last_delivered)
    if waiting:
        day = waiting[0]["partition_key"]
        raise dg.Failure(
            f"{vendor}/{deliverable} {key}: waiting for {day}: it entered the chain before "
            f"{key} and is not delivered; {_drop_hint(vendor, deliverable, day)}",
            allow_retries=False,
        )
