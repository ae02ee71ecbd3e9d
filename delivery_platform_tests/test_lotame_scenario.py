"""Lotame end state (issue 16, R11/R12): the real daily job over 48 simulated days; after every
day, the replica of Lotame (replicas/lotame.py, from the document) equals the warehouse's truth."""

from __future__ import annotations

import datetime as dt

import pytest

from delivery_platform import settings
from delivery_platform_tests.replicas.lotame import LotameReplica
from delivery_platform_tests.scenario import Scenario, calendar
from delivery_platform_tests.scenario.lotame_world import make_world

FIRST, DAYS = dt.date(2026, 9, 1), 48
FAILS, RESENT_AFTER, RESENT = 12, 25, 20  # day indexes
JOB = "lotame_daily_delivery"


def failure_text(result) -> str:
    return " ".join(str(e.event_specific_data.error.message) for e in result.all_events if e.is_step_failure)


class LotameRun:
    """The scenario plus the replica, fed with the files the ledger says were delivered."""

    def __init__(self, scenario: Scenario, mode: str):
        self.scenario, self.modes = scenario, {}
        self.config = {"resources": {"lotame_settings": {"config": {"mode": mode}}}}
        self.replica = LotameReplica(mode_of=lambda folder: self.modes[folder])

    def run(self, partition: str, at: dt.datetime, **config):
        run_config = dict(self.config)
        if config:
            run_config["ops"] = {"lotame__segmentmembership_delivery": {"config": config}}
        result = self.scenario.run(JOB, partition, at=at, run_config=run_config)
        if result.success:
            staged = result.asset_materializations_for_node("lotame__segment_memberships")[0].metadata
            self.modes[partition.replace("-", "")] = staged["mode"].value
        for received in self.scenario.new_deliveries("lotame"):
            self.replica.apply(received)
        return result


@pytest.fixture
def world(tmp_path, data_dir, monkeypatch):
    world = make_world(FIRST, DAYS)
    path = world.write(tmp_path / "lotame-world.duckdb")
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(path))
    return world, Scenario(path)


@pytest.mark.parametrize("mode", ["comprehensive", "delta"])
def test_lotame_holds_the_warehouse_truth_after_every_day(world, mode):
    world, scenario = world
    lotame = LotameRun(scenario, mode)
    days = calendar(FIRST, DAYS)
    cleared, modes = 0, {}
    for day in days:
        if day.index == FAILS:
            # the destination refuses the day: its folder's name is taken by a stray file
            blocker = settings.outbox_dir() / "lotame" / day.partition.replace("-", "")
            blocker.parent.mkdir(parents=True, exist_ok=True)
            blocker.write_text("not a folder")
            assert not lotame.run(day.partition, day.runs_at).success
            assert lotame.replica.memberships() == world.truth(days[FAILS - 1].date)  # nothing half-imported
            blocker.unlink()
            continue
        if day.index == FAILS + 1:
            # the next day must not overtake the failed one ...
            early = lotame.run(day.partition, day.runs_at)
            assert not early.success and f"waiting for {days[FAILS].partition}" in failure_text(early)
            # ... which is sent late, against what Lotame last received
            late = lotame.run(days[FAILS].partition, day.runs_at)
            assert late.success, failure_text(late)
            meta = late.asset_materializations_for_node("lotame__segmentmembership_delivery")[0].metadata
            assert meta["computed_against"].value == days[FAILS - 1].partition
            assert lotame.replica.memberships() == world.truth(days[FAILS].date)
        result = lotame.run(day.partition, day.runs_at)
        assert result.success, (day.partition, failure_text(result))
        staged = result.asset_materializations_for_node("lotame__segment_memberships")[0].metadata
        cleared += staged["ids_cleared"].value
        modes[day.index] = staged["mode"].value
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert checks["consistent_with_deliveries"].passed, checks["consistent_with_deliveries"].description
        assert lotame.replica.memberships() == world.truth(day.date), day.partition
        if day.index == RESENT_AFTER:
            for config in ({}, {"redeliver": True}):
                again = lotame.run(days[RESENT].partition, day.runs_at, **config)
                assert not again.success and "refused: Lotame already received" in failure_text(again)
                assert lotame.replica.memberships() == world.truth(day.date)
            same = lotame.run(day.partition, day.runs_at)  # the last day again: nothing sent twice
            meta = same.asset_materializations_for_node("lotame__segmentmembership_delivery")[0].metadata
            assert same.success and meta["delivery_action"].value.startswith("skipped")
            forced = lotame.run(day.partition, day.runs_at, redeliver=True)
            assert not forced.success and "already received and applied" in failure_text(forced)
            assert lotame.replica.memberships() == world.truth(day.date)
    assert cleared > 0  # users who left every segment were cleared
    assert lotame.replica.imported == [d.partition.replace("-", "") for d in days]  # partition order
    if mode == "delta":
        # the first file, then the 30-day refresh (the failed day 12 was sent late, as a delta)
        assert sorted(i for i, m in modes.items() if m == "comprehensive") == [0, 30]
    else:
        assert set(modes.values()) == {"comprehensive"}


def _run_in_process(home: str, partition: str, at: str, queue) -> None:
    """One run in its own process, on the instance both runs share (as the run queue would)."""
    import os

    import dagster as dg

    from delivery_platform.core import clock
    from delivery_platform.definitions import build_defs

    try:
        os.environ["DAGSTER_HOME"] = home
        instance = dg.DagsterInstance.get()
        job = build_defs("local").resolve_job_def(JOB)
        config = {"resources": {"lotame_settings": {"config": {"mode": "delta"}}}}
        with clock.pinned(at):
            result = job.execute_in_process(
                partition_key=partition, instance=instance, raise_on_error=False, run_config=config
            )
        queue.put((partition, result.success, failure_text(result)))
    except BaseException as exc:  # the parent must hear about it, not wait for a timeout
        queue.put((partition, False, f"crashed: {type(exc).__name__}: {exc}"))


@pytest.mark.fault(
    "lotame-chain",
    "two delta days run at once, the later one launched first",
    "delivered in partition order: the later day waits, or fails with 'waiting for <day>' and is "
    "re-run; what Lotame holds equals the warehouse",
)
def test_two_delta_days_run_at_once_deliver_in_partition_order(world, tmp_path, ledger_backend):
    """Issue 22 item 5: the production queue allows two runs per vendor, and a backfill does it."""
    import multiprocessing

    world, scenario = world
    lotame = LotameRun(scenario, "delta")
    days = calendar(FIRST, 4)
    for day in days[:2]:
        assert lotame.run(day.partition, day.runs_at).success
    home = tmp_path / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # create the instance's storage once here: two processes creating it at the same moment race
    # on its schema table (a test artefact; a deployed instance exists before any run)
    import dagster as dg

    dg.DagsterInstance.from_config(str(home)).dispose()
    spawn = multiprocessing.get_context("spawn")
    queue = spawn.Queue()
    later, earlier = days[3], days[2]
    procs = [
        spawn.Process(target=_run_in_process, args=(str(home), d.partition, later.runs_at.isoformat(), queue))
        for d in (later, earlier)
    ]  # the later day is even launched first
    for proc in procs:
        proc.start()
    outcomes = {}
    for _ in procs:
        partition, ok, text = queue.get(timeout=120)
        outcomes[partition] = (ok, text)
    for proc in procs:
        proc.join(30)
    assert outcomes[earlier.partition][0], outcomes[earlier.partition][1]
    # both days are deltas (within 30 days of the first); known before any of their files is applied
    lotame.modes.update({d.partition.replace("-", ""): "delta" for d in days[2:]})
    ok, text = outcomes[later.partition]
    if not ok:  # it overtook the earlier day in the chain: refused, never sent on a stale base
        assert (
            f"waiting for {earlier.partition}" in text or f"against the file for {days[1].partition}" in text
        ), text
        assert lotame.run(later.partition, later.runs_at).success
    for received in scenario.new_deliveries("lotame"):
        lotame.replica.apply(received)
    assert lotame.replica.imported == [d.partition.replace("-", "") for d in days]
    assert lotame.replica.memberships() == world.truth(later.date)
