"""Each delivery's deadline is a `freshness_check` on its delivery asset; the missed-deadline
sensor evaluates it, records the overdue partition on the check and alerts from that result."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from delivery_platform.alerts import AlertSinks
from delivery_platform.alerts import freshness
from delivery_platform.alerts.sensors import AlertLog, build_alert_sensors, deadline_alerts
from delivery_platform.vendors import DEADLINES
from delivery_platform.core import clock
from delivery_platform.definitions import build_defs
from delivery_platform.ledger import Ledger
from delivery_platform.resources import LedgerResource
from delivery_platform_tests.http_doubles import Recorder

UTC = dt.timezone.utc


def test_every_delivery_asset_has_a_freshness_check_with_its_partitions():
    defs = build_defs("local")
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    deliveries = {k for k in specs if k.path[-1].endswith("_delivery")}
    graph = defs.resolve_asset_graph()
    checked = {k.asset_key for k in graph.asset_check_keys if k.name == freshness.CHECK_NAME}
    assert deliveries and checked == deliveries
    assert {freshness.delivery_key(v, d) for v, d in DEADLINES} == deliveries
    checks = {k: c for c in defs.asset_checks or [] for k in getattr(c, "check_keys", [])}
    for key in deliveries:
        check = checks[dg.AssetCheckKey(key, freshness.CHECK_NAME)]
        assert check.partitions_def == specs[key].partitions_def
        spec = next(iter(check.check_specs))
        assert "UTC" in spec.metadata["deadline"] and "by" in spec.description


def test_deadlines_come_from_the_one_spec(monkeypatch):
    assert freshness.due_at(DEADLINES[("ispot", "conversions")], "2026-11-20") == dt.datetime(
        2026, 11, 21, 14, tzinfo=UTC
    )
    assert freshness.due_at(DEADLINES[("idomoo", "data_file")], "2026-11-21") == dt.datetime(
        2026, 11, 21, 12, tzinfo=UTC
    )
    monkeypatch.setenv("OPTIMOVE_DATA_READY_UTC", "06:30")  # read at each evaluation, as the schedule does
    assert freshness.due_at(DEADLINES[("optimove", "customers")], "2026-11-20") == dt.datetime(
        2026, 11, 21, 6, 30, tzinfo=UTC
    )


def _latest(instance, key, partition):
    records = (
        instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(key, freshness.CHECK_NAME), limit=10, partition=partition
        )
        if _has_partition_arg(instance)
        else instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(key, freshness.CHECK_NAME), limit=10
        )
    )
    evaluations = [r.event.dagster_event.event_specific_data for r in records if r.event]
    return [e for e in evaluations if e.partition == partition]


def _has_partition_arg(instance) -> bool:
    import inspect

    return (
        "partition"
        in inspect.signature(instance.event_log_storage.get_asset_check_execution_history).parameters
    )


def test_the_sensor_records_an_overdue_partition_on_the_check_and_alerts_once(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    key = freshness.delivery_key("lotame", "segmentmembership")
    ledger = Ledger()
    ledger.mark_partition("lotame", "segmentmembership", "2026-11-19", "complete", files=3)
    deadlines = {("lotame", "segmentmembership"): DEADLINES[("lotame", "segmentmembership")]}
    with Recorder() as hook:
        sinks = AlertSinks(webhook_url=hook.url)
        before = dt.datetime(2026, 11, 21, 11, 59, tzinfo=UTC)  # the 20th is due at 12:00
        assert deadline_alerts(deadlines, ledger, AlertLog(), sinks, before, instance) == []
        assert _latest(instance, key, "2026-11-20") == []
        late = dt.datetime(2026, 11, 21, 12, 1, tzinfo=UTC)
        alerts = deadline_alerts(deadlines, ledger, AlertLog(), sinks, late, instance)
        assert [(a.partition, a.check) for a in alerts] == [("2026-11-20", freshness.CHECK_NAME)]
        (recorded,) = _latest(instance, key, "2026-11-20")
        assert recorded.passed is False and "not delivered by 2026-11-21 12:00 UTC" in recorded.description
        assert _latest(instance, key, "2026-11-19") == []  # delivered, never failing: nothing to record
        # the next tick: no second alert, no second record
        assert (
            deadline_alerts(deadlines, ledger, AlertLog(), sinks, late + dt.timedelta(minutes=15), instance)
            == []
        )
        assert len(_latest(instance, key, "2026-11-20")) == 1
        # delivered late: no alert; the delivering run's own check records the pass (Dagster keeps one
        # run-less evaluation per partition, so the sensor records only the overdue one)
        ledger.mark_partition("lotame", "segmentmembership", "2026-11-20", "complete", files=3)
        assert (
            deadline_alerts(deadlines, ledger, AlertLog(), sinks, late + dt.timedelta(hours=1), instance)
            == []
        )
        assert len(_latest(instance, key, "2026-11-20")) == 1
        assert len(hook.requests) == 1


def test_a_half_delivered_bundle_is_overdue_not_fresh(data_dir):
    ledger = Ledger()
    ledger.mark_partition("ispot", "conversions", "2026-11-20", "delivering", files=2)
    result = freshness.evaluate(
        "ispot", "conversions", 14, "2026-11-20", dt.datetime(2026, 11, 21, 15, tzinfo=UTC), ledger
    )
    assert (
        not result.passed and result.state == "incomplete" and "some files are missing" in result.description
    )
    assert result.metadata["overdue_minutes"].value == 60


def test_the_sensor_in_the_definitions_reads_the_pinned_clock(data_dir):
    instance = dg.DagsterInstance.ephemeral()
    sensor = next(s for s in build_alert_sensors("local", DEADLINES) if s.name == "alerts_on_missed_deadlines")
    with Recorder() as hook, clock.pinned("2026-11-21T15:00:00Z"):
        context = dg.build_sensor_context(
            instance=instance,
            resources={"alert_sinks": AlertSinks(webhook_url=hook.url), "ledger": LedgerResource()},
        )
        result = sensor(context)
        # every deliverable, the last two partitions of each due by 15:00 on the 21st, none delivered
        assert result.skip_message == f"{2 * len(DEADLINES)} missed deadline(s) alerted"
        assert len(DEADLINES) == 7  # five vendors, Optimove's two tables, Idomoo's two storyboards
    overdue = _latest(instance, freshness.delivery_key("ispot", "conversions"), "2026-11-20")
    assert [e.passed for e in overdue] == [False]


def test_the_check_passes_in_the_delivery_run(data_dir):
    defs = build_defs("local")
    job = defs.resolve_job_def("digital_audience_daily_delivery")
    result = job.execute_in_process(
        partition_key="2026-11-19", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert result.success
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == freshness.CHECK_NAME]
    assert check.passed and check.partition == "2026-11-19" and "is delivered" in check.description
