"""The alert sensors. Each alert has a key; the alert log (beside the ledger: SQLite or PostgreSQL) records the
keys already sent and the last state of each check, so a restarted daemon or a re-evaluated run
never alerts twice, and a recovery is announced exactly once."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import dagster as dg

from .. import settings
from ..core import clock, db
from ..delivery import LEFTOVERS
from ..ledger import Ledger
from ..resources import LedgerResource
from . import freshness
from .model import Alert
from .outbox import AlertOutbox
from .sinks import AlertSinks

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts_sent (key TEXT PRIMARY KEY, sent_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS check_state (subject TEXT PRIMARY KEY, failing INTEGER NOT NULL, run_id TEXT);
"""


class AlertLog:
    """Beside the ledger: alerts.sqlite in the data folder, or the ledger's PostgreSQL database when
    `DELIVERY_LEDGER_URL` is set (core/db.py), so every node sees the keys already sent."""

    def __init__(self, path: Path | str | None = None):
        self.store = db.open_store(path, settings.data_dir() / "alerts.sqlite")
        self.path = self.store.path if isinstance(self.store, db.SQLiteStore) else None
        self.store.migrate("alert_log", [SCHEMA])

    def claim(self, key: str) -> bool:
        """True the first time a key is seen (then the alert is ours to send)."""
        with self.store.transaction() as con:
            return con.execute("INSERT INTO alerts_sent (key, sent_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                               (key, dt.datetime.now(dt.timezone.utc).isoformat())).rowcount == 1

    def set_failing(self, subject: str, failing: bool, run_id: str) -> bool:
        """Record a check's state; True when it changed."""
        with self.store.transaction(lock=f"check_state:{subject}") as con:
            row = con.execute("SELECT failing FROM check_state WHERE subject = ?", (subject,)).fetchone()
            con.execute(db.upsert("check_state", ("subject", "failing", "run_id"), ("subject",)),
                        (subject, int(failing), run_id))
        return row is None and failing or (row is not None and bool(row[0]) != failing)

    def failing(self, *patterns: str) -> list[str]:
        """Subjects failing now whose name matches one of the LIKE patterns."""
        where = " OR ".join("subject LIKE ?" for _ in patterns) or "1=1"
        with self.store.connect() as con:
            return [r[0] for r in con.execute(f"SELECT subject FROM check_state WHERE failing = 1 AND ({where}) "
                                              "ORDER BY subject", patterns)]

    def sent_keys(self, pattern: str) -> list[str]:
        """Keys of alerts sent whose key matches the LIKE pattern."""
        with self.store.connect() as con:
            return [r[0] for r in con.execute("SELECT key FROM alerts_sent WHERE key LIKE ? ORDER BY key",
                                              (pattern,))]


def _vendor(key: dg.AssetKey) -> str:
    return key.path[0] if len(key.path) > 1 else "warehouse"


# the platform's own key prefixes, followed by the vendor's name (`status/lotame`, `preflight/ispot/...`)
PLATFORM_PREFIXES = ("status", "preflight")


def _vendor_of(key: dg.AssetKey) -> str:
    """The vendor a vendor asset's key names: its first part, or the second after a platform prefix."""
    path = key.path
    if len(path) < 2:
        return ""  # a warehouse table
    return path[1] if path[0] in PLATFORM_PREFIXES else path[0]


def run_vendor(run: dg.DagsterRun) -> str:
    """The vendor a run belongs to, however it was launched. Jobs and sensors tag `vendor`; a launch
    from the asset graph or a UI backfill runs `__ASSET_JOB` untagged, but every vendor asset and check
    is in its vendor's concurrency pool, and its asset keys name the vendor (`status/lotame`,
    `preflight/ispot/...` too). A run spanning vendors names them all (`ispot+lotame`)."""
    if run.tags.get("vendor"):
        return run.tags["vendor"]
    pools = set(run.run_op_concurrency.all_pools or []) if run.run_op_concurrency else set()
    keys = [*(run.asset_selection or []), *(k.asset_key for k in run.asset_check_selection or [])]
    named = {_vendor_of(key) for key in keys} - {""}
    vendors = sorted(pools) or sorted(named)  # every pool is a vendor's
    if vendors:
        return "+".join(vendors)
    return "platform" if run.job_name.startswith("__") else run.job_name  # e.g. vendor_status


def run_label(run: dg.DagsterRun) -> tuple[str, str]:
    """What a failed run ran (a job, or the assets picked in the UI) and for which partition(s)."""
    tags = run.tags
    partition = tags.get("dagster/partition") or (
        f"{tags['dagster/asset_partition_range_start']}..{tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in tags else "")
    if not run.job_name.startswith("__"):
        return run.job_name, partition
    keys = sorted(k.to_user_string() for k in run.asset_selection or [])
    what = ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
    return what or "asset checks", partition


def _samples(metadata: dict) -> list:
    value = metadata.get("sample_rows")
    return list(getattr(value, "value", None) or value or [])[:3] if value is not None else []


def process_run(instance: dg.DagsterInstance, run_id: str, sinks: AlertSinks, log: AlertLog) -> list[Alert]:
    """Alerts for one finished run: each failed check, a failed run, each recovered check."""
    run = instance.get_run_by_id(run_id)
    partition = run.tags.get("dagster/partition", "") if run else ""
    link = f"{sinks.ui_url.rstrip('/')}/runs/{run_id}"
    alerts = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        key, check = evaluation.asset_key, evaluation.check_name
        if check.startswith("preflight_"):
            continue  # a preflight alerts itself, once per deliverable and day (operations/preflight.py)
        part = getattr(evaluation, "partition", None) or partition
        subject = f"{key.to_user_string()}:{check}:{part}"
        failing = not evaluation.passed
        changed = log.set_failing(subject, failing, run_id)
        metadata = evaluation.metadata or {}
        count = getattr(metadata.get("failure_count"), "value", None)
        if failing and log.claim(f"check:{run_id}:{subject}"):
            severity = getattr(evaluation.severity, "value", str(evaluation.severity))
            alerts.append(Alert("check_failed", _vendor(key), f"[{severity}] check {check} failed on "
                                f"{key.to_user_string()} {part}", deliverable=key.path[-1], partition=part, check=check,
                                failure_count=count, samples=_samples(metadata),
                                detail=evaluation.description or "", link=link))
        elif not failing and changed and log.claim(f"recovered:{run_id}:{subject}"):
            alerts.append(Alert("recovered", _vendor(key), f"recovered: check {check} passes again on "
                                f"{key.to_user_string()} {part}", deliverable=key.path[-1], partition=part, check=check,
                                link=link))
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = record.dagster_event.event_specific_data.materialization
        left = materialization.metadata.get(LEFTOVERS)
        name = materialization.asset_key.to_user_string()
        if left and left.value and log.claim(f"leftover:{run_id}:{name}"):
            alerts.append(Alert("leftover_file", _vendor(materialization.asset_key),
                                f"temporary file(s) of a killed upload could not be removed from {name}'s "
                                f"destination {partition}", deliverable=materialization.asset_key.path[-1],
                                partition=partition, detail="remove by hand at the vendor: " + "; ".join(left.value),
                                link=link))
    if run and run.status == dg.DagsterRunStatus.FAILURE and log.claim(f"run:{run_id}"):
        what, partition = run_label(run)
        failure = next((r for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)), None)
        detail = ""
        if failure is not None:
            error = failure.dagster_event.event_specific_data.error
            detail = (error.message if error else failure.message or "").strip().splitlines()[0][:500]
        alerts.append(Alert("run_failed", run_vendor(run), f"run of {what} failed for {partition}",
                            partition=partition, detail=detail, link=link, deliverable=what))
    for alert in alerts:
        sinks.send(alert)
    return alerts


def deadline_alerts(deadlines: dict, ledger: Ledger, log: AlertLog, sinks: AlertSinks,
                    now: dt.datetime, instance: dg.DagsterInstance | None = None) -> list[Alert]:
    """(vendor, deliverable) -> hour (UTC) of the day after the partition by which it must be
    delivered (an int, a `dt.time`, or a function giving one, read at each evaluation), or
    (days after the partition, hour) for another day (0: the partition's own day, a send date).

    Evaluates each delivery asset's `freshness_check` (alerts/freshness.py) for the last two
    partitions that can be due; with an `instance`, records an overdue result once as the check's
    evaluation, so the UI shows it. Alerts once per overdue partition, from that result."""
    alerts = []
    for (vendor, deliverable), when in deadlines.items():
        for day in freshness.recent_partitions(when, now):
            result = freshness.evaluate(vendor, deliverable, when, day, now, ledger)
            if result.state == "not_due":
                continue
            subject = f"{freshness.delivery_key(vendor, deliverable).to_user_string()}:{freshness.CHECK_NAME}:{day}"
            log.set_failing(subject, not result.passed, "sensor")  # a later passing run announces the recovery
            if result.passed:
                continue
            # Dagster 1.13 stores one run-less evaluation per check and partition (a second one breaks a
            # unique index): the overdue result is recorded once; the run that delivers records the pass
            if instance is not None and log.claim(f"freshness-recorded:{subject}"):
                try:
                    instance.report_runless_asset_event(freshness.to_evaluation(result))
                except Exception as exc:  # the UI record must never cost the alert
                    logging.getLogger(__name__).warning(f"could not record {subject} on the check: {exc}")
            if log.claim(f"deadline:{vendor}:{deliverable}:{day}"):
                alert = Alert("deadline_missed", vendor, f"{vendor}/{deliverable} for {day} was not delivered by "
                              f"{result.due:%Y-%m-%d %H:%M} UTC", deliverable=deliverable, partition=day,
                              check=freshness.CHECK_NAME,
                              detail="delivery began but did not finish: some files are missing at the vendor"
                              if result.state == "incomplete" else "the schedule did not run or the run did not finish")
                sinks.send(alert)
                alerts.append(alert)
    return alerts


def build_alert_sensors(env: str, deadlines: dict) -> list:
    """The alert sensors; `deadlines` is (vendor, deliverable) -> deadline, from the vendor registry."""
    status = dg.DefaultSensorStatus.RUNNING if env == "production" else dg.DefaultSensorStatus.STOPPED

    def handler(context: dg.RunStatusSensorContext, alert_sinks: AlertSinks) -> None:
        sent = process_run(context.instance, context.dagster_run.run_id, alert_sinks, AlertLog())
        if sent:
            context.log.info(f"sent {len(sent)} alert(s) for run {context.dagster_run.run_id}")

    on_success = dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, name="alerts_on_checks",
                                      default_status=status, monitor_all_code_locations=False,
                                      description="Alerts on failed asset checks (any severity) of successful runs, "
                                                  "and on recoveries.")(handler)
    on_failure = dg.run_failure_sensor(name="alerts_on_failures", default_status=status,
                                       description="Alerts on failed runs and their failed checks.")(handler)

    @dg.sensor(name="alerts_on_missed_deadlines", minimum_interval_seconds=900, default_status=status,
               description="Evaluates each delivery's freshness_check (its deliverable's deadline) for the last two "
                           "due partitions, records an overdue one on the check and alerts once.")
    def on_deadline(context: dg.SensorEvaluationContext, alert_sinks: AlertSinks,
                    ledger: LedgerResource) -> dg.SkipReason:
        sent = deadline_alerts(deadlines, ledger.get(), AlertLog(), alert_sinks, clock.now(), context.instance)
        return dg.SkipReason(f"{len(sent)} missed deadline(s) alerted")

    @dg.sensor(name="alerts_retry", minimum_interval_seconds=60, default_status=status,
               description="Sends alerts a sink did not accept yet (Slack throttling, SMTP down, ...); its tick "
                           "fails, naming the sink, while an alert stays undelivered past ALERT_STUCK_MINUTES.")
    def on_retry(context: dg.SensorEvaluationContext, alert_sinks: AlertSinks) -> dg.SkipReason:
        outbox = AlertOutbox()
        sent = alert_sinks.flush(outbox)
        stuck = outbox.stuck(float(os.environ.get("ALERT_STUCK_MINUTES", "30")) * 60)
        if stuck:
            raise AlertSinkDown("alerts not delivered: " + "; ".join(
                f"{s['sink']}: {s['alerts']} alert(s) since {s['oldest']}, {s['attempts']} attempt(s), last error "
                f"{s['last_error']}" for s in stuck))
        return dg.SkipReason(f"{len(sent)} queued alert(s) delivered; none waiting too long")

    return [on_success, on_failure, on_deadline, on_retry]


class AlertSinkDown(Exception):
    """An alert sink has not accepted alerts for too long: the retry sensor's tick fails with this."""
