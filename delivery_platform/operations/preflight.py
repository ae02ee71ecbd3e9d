"""Preflight: an hour before each vendor's run, ask whether tonight's delivery can work.

Per deliverable, one multi-asset check on a `preflight/<vendor>/<deliverable>` asset (an
observation target, never materialized) reports each probe of `probes.py` as its own check:
pass, or fail with what was seen and the remedy. `<vendor>_preflight` runs a vendor's
deliverables; its schedule fires an hour before the vendor's daily schedule; it is launchable
from the UI like any job.

The probes read the same environment variables the delivery run will read (destinations,
iSpot credentials, PGP files), so a variable that is missing fails the `credentials` probe by
name instead of failing tonight's run. A failed preflight alerts once per deliverable, day and
set of failing probes (the alert log holds the key), however often it is launched again.
"""

import datetime as dt
import os
import tempfile
from pathlib import Path

import dagster as dg

from ..alerts import Alert, AlertSinks
from ..alerts.sensors import AlertLog
from ..core import clock
from ..destinations import destination_from_env
from ..destinations.resource import destination_kind_from_env
from ..warehouse.resource import WarehouseResource
from . import probes
from ..registry import Deliverable, Vendor

GROUP = "preflight"
PREFIX = "preflight_"  # check names; the run alerts below, so the check alert sensor leaves them alone
DESCRIPTIONS = {
    "credentials": "The destination's settings and secrets resolve and it answers an authenticated read.",
    "ispot_token": "iSpot's token endpoint issues a bearer token for ISPOT_CLIENT_ID / ISPOT_CLIENT_SECRET.",
    "sftp_host_key": "The SFTP server shows the pinned host key.",
    "pgp_keys": "The vendor's PGP key exists, is not expired and encrypts; our key, when set, signs.",
    "write_probe": "An empty, uniquely named object is written, read back and deleted where the vendor never "
    "picks it up (skipped, with the reason, where the vendor's document names no such place).",
    "warehouse_day": "The warehouse holds rows for the day the run will send, and is loaded up to its end.",
}


def preflight_key(d: Deliverable) -> dg.AssetKey:
    return dg.AssetKey([GROUP, d.vendor, d.name])


def probe_names(vendor: Vendor, d: Deliverable, environ: dict | None = None) -> list[str]:
    """The probes of a deliverable; a vendor adds its own (`extras["preflight_probes"]`: `ispot_token`,
    `pgp_keys`) where its document calls for them."""
    environ = os.environ if environ is None else environ
    own = vendor.extras.get("preflight_probes", ())
    names = ["credentials", *(n for n in own if n == "ispot_token")]
    if destination_kind_from_env(d.vendor, environ) == "sftp":  # the kind only: cheaper than the resource
        names.append("sftp_host_key")
    return names + [n for n in own if n == "pgp_keys"] + ["write_probe", "warehouse_day"]


def run_probes(vendor: Vendor, d: Deliverable, day: dt.date, warehouse: WarehouseResource) -> list[probes.ProbeResult]:
    """Every probe of the deliverable, in order; each one is independent of the others' outcome.
    What a vendor's own probes need comes from `extras["preflight_inputs"]()`: the upload `folder`,
    the `token_api`, the settings holding its `pgp` keys."""
    own = vendor.extras.get("preflight_probes", ())
    inputs = vendor.extras.get("preflight_inputs", dict)()
    results = []
    destination = destination_from_env(d.vendor)
    checked, resolved = probes.credentials(destination, inputs.get("folder", ""))
    results.append(checked)
    if "ispot_token" in own:
        results.append(probes.ispot_token(inputs["token_api"]))
    if destination.kind == "sftp":
        results.append(probes.sftp_host_key(resolved or destination))
    if "pgp_keys" in own:
        try:
            s = probes.resolve(inputs["pgp"])
            results.append(probes.pgp_keys(s.pgp_public_key_file, s.pgp_private_key_file, s.pgp_passphrase))
        except probes.DestinationError as exc:
            results.append(probes.ProbeResult("pgp_keys", False, str(exc), f"set {inputs.get('pgp_secret', '')}"))
    with tempfile.TemporaryDirectory(prefix="preflight") as work:
        results.append(probes.write_probe(resolved, d, Path(work)))
    slack = float(os.environ.get("PREFLIGHT_FRESHNESS_SLACK_HOURS", "6"))
    results.append(probes.warehouse_day(warehouse, d, day, slack_hours=slack))
    return results


def alert_once(
    d: Deliverable,
    day: dt.date,
    results: list[probes.ProbeResult],
    sinks: AlertSinks,
    log: AlertLog | None = None,
    link: str = "",
) -> Alert | None:
    failed = [r for r in results if not r.passed and not r.warn_only]
    log = log or AlertLog()
    # the state the status page reads as an open alert, until a later preflight of the day passes
    log.set_failing(f"{preflight_key(d).to_user_string()}:preflight:{day}", bool(failed), link)
    if not failed:
        return None
    if not log.claim(f"preflight:{d.vendor}:{d.name}:{day}:{','.join(r.probe for r in failed)}"):
        return None
    alert = Alert(
        "preflight_failed",
        d.vendor,
        f"preflight: {d.label} for {day} will fail ({', '.join(r.probe for r in failed)})",
        deliverable=d.name,
        partition=day.isoformat(),
        check=",".join(PREFIX + r.probe for r in failed),
        failure_count=len(failed),
        detail="\n".join(f"{r.probe}: {r.text()}" for r in failed),
        link=link,
    )
    sinks.send(alert)
    return alert


class PreflightConfig(dg.Config):
    day: str = (
        ""  # the data day to probe (YYYY-MM-DD); default: yesterday by the clock, the next run's partition
    )


def build_check(vendor: Vendor, d: Deliverable) -> dg.AssetChecksDefinition:
    key = preflight_key(d)
    names = probe_names(vendor, d)
    specs = [dg.AssetCheckSpec(PREFIX + n, asset=key, description=DESCRIPTIONS[n]) for n in names]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{d.vendor}__{d.name}_preflight",
        can_subset=False,
        pool=d.vendor,
        description=f"Preflight probes of {d.label}.",
    )
    def preflight(
        context: dg.AssetCheckExecutionContext,
        config: PreflightConfig,
        warehouse: WarehouseResource,
        alert_sinks: AlertSinks,
    ):
        day = dt.date.fromisoformat(config.day) if config.day else clock.yesterday()
        results = run_probes(vendor, d, day, warehouse)
        by_name = {r.probe: r for r in results}
        for name in names:
            # the destination's kind is read when the definitions load; a probe the run's environment
            # no longer calls for (the kind changed since) passes as not applicable
            r = by_name.get(name) or probes.ProbeResult(name, True, "not applicable to the destination now")
            (context.log.info if r.passed else context.log.error)(f"{d.label} {day} {name}: {r.text()}")
            yield dg.AssetCheckResult(
                check_name=PREFIX + name,
                asset_key=key,
                passed=r.passed,
                severity=dg.AssetCheckSeverity.WARN if r.warn_only else dg.AssetCheckSeverity.ERROR,
                description=r.text()[:2000],
                metadata={
                    "day": day.isoformat(),
                    "remedy": r.remedy or "none needed",
                    **{k: v for k, v in r.metadata.items() if isinstance(v, (str, int, float, bool))},
                },
            )
        link = f"{alert_sinks.ui_url.rstrip('/')}/runs/{context.run.run_id}"
        if alert_once(d, day, results, alert_sinks, link=link):
            context.log.warning(f"{d.label}: preflight alert sent")

    return preflight


def _run_hour(defs: dg.Definitions, vendor: str) -> tuple[int, int]:
    """(hour, minute) of the vendor's first daily schedule (a partitioned-job schedule, or a cron one)."""
    schedule = next(s for s in defs.schedules if s.name.startswith(f"{vendor}_") and
                    s.name.endswith("_daily_schedule"))
    if hasattr(schedule, "hour_of_day"):  # built from a partitioned job: resolved only later
        return schedule.hour_of_day or 0, schedule.minute_of_hour or 0
    minute, hour = schedule.cron_schedule.split()[:2]
    return int(hour), int(minute)


def build_defs(base: dg.Definitions, env: str, vendors) -> dg.Definitions:
    """Targets, checks, a job and a schedule an hour before the vendor's own, per vendor."""
    specs, checks, jobs, schedules = [], [], [], []
    status = dg.DefaultScheduleStatus.RUNNING if env == "production" else dg.DefaultScheduleStatus.STOPPED
    for entry in vendors:
        vendor, mine = entry.name, list(entry.deliverables)
        specs += [
            dg.AssetSpec(
                preflight_key(d),
                group_name=GROUP,
                kinds={"python"},
                description=f"What the preflight probes of {d.label} check before its run "
                "(never materialized; see its checks).",
            )
            for d in mine
        ]
        vendor_checks = [build_check(entry, d) for d in mine]
        checks += vendor_checks
        job = dg.define_asset_job(
            f"{vendor}_preflight",
            selection=dg.AssetSelection.checks(*vendor_checks),
            tags={"vendor": vendor, "kind": "preflight"},
            description=f"Preflight probes of {vendor}'s deliverables, before its daily run.",
        )
        jobs.append(job)
        hour, minute = _run_hour(base, vendor)
        schedules.append(
            dg.ScheduleDefinition(
                name=f"{vendor}_preflight_schedule",
                job=job,
                cron_schedule=f"{minute} {(hour - 1) % 24} * * *",
                execution_timezone="UTC",
                default_status=status,
                description=f"An hour before {vendor}_daily_schedule ({hour:02d}:{minute:02d} UTC).",
            )
        )
    return dg.Definitions(assets=specs, asset_checks=checks, jobs=jobs, schedules=schedules)
