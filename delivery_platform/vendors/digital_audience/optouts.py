"""Opt-outs never go where dA's Onboarding API reads records to onboard (DIGEST R6).

The document only asks for new records ("Ongoing CRM data update": "the new records should be
uploaded"); a file of opted-out contacts in the polled location would onboard those very people.
So opt-outs since the last delivery are counted and reported (the WARN check `opt_outs` on
`digital_audience/crm_records`, which the alert sensor turns into an alert), and written only
when a separate location and a format dA has confirmed are both configured:

- `DELIVERY_DIGITAL_AUDIENCE_OPTOUT_DESTINATION` (+ the usual `_SFTP_*`/`_S3_*`/... variables of
  that destination, as for any vendor), and
- `DELIVERY_DIGITAL_AUDIENCE_OPTOUT_FORMAT`: the confirmed columns, comma-separated, from
  `spec.COLUMNS` (e.g. `custom,email_sha256,phone_sha256`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dagster as dg

from ...destinations.resource import DestinationResource, destination_from_env, env_name
from . import spec

OPTOUT = "digital_audience_optout"  # the destination's "vendor" name: DELIVERY_DIGITAL_AUDIENCE_OPTOUT_*
DELIVERABLE = "crm_optout"  # its ledger deliverable, apart from the onboarding files
DESTINATION_VAR, FORMAT_VAR = env_name(OPTOUT, "DESTINATION"), env_name(OPTOUT, "FORMAT")


@dataclass(frozen=True)
class OptOutTarget:
    columns: tuple[str, ...]
    destination: str  # the destination kind, for messages


def optout_target(environ: dict | None = None) -> OptOutTarget | None:
    """The configured opt-out location and format, or None when neither is set. One without the
    other is a configuration error (it names the missing variable)."""
    environ = os.environ if environ is None else environ
    kind, fmt = environ.get(DESTINATION_VAR, "").strip(), environ.get(FORMAT_VAR, "").strip()
    if not kind and not fmt:
        return None
    if not kind or not fmt:
        missing = FORMAT_VAR if kind else DESTINATION_VAR
        raise dg.Failure(
            f"digitalAudience opt-outs: {missing} is not set; an opt-out location needs both "
            f"{DESTINATION_VAR} and {FORMAT_VAR} (the columns dA confirmed)",
            allow_retries=False,
        )
    columns = tuple(c.strip() for c in fmt.split(",") if c.strip())
    unknown = [c for c in columns if c not in spec.COLUMNS]
    if unknown or not columns:
        raise dg.Failure(
            f"digitalAudience opt-outs: {FORMAT_VAR}={fmt!r}: unknown column(s) {unknown}; expected "
            f"a comma-separated list from {', '.join(spec.COLUMNS)}",
            allow_retries=False,
        )
    return OptOutTarget(columns, kind.lower())


def optout_resource() -> DestinationResource:
    return destination_from_env(OPTOUT)


def report(count: int, previous: str | None, target: OptOutTarget | None, file_name: str | None) -> str:
    """What the `opt_outs` check says."""
    since = f"since the delivery of {previous}" if previous else "(first delivery: none to report)"
    if not count:
        return f"no contact opted out {since}"
    where = (
        f"sent only to the opt-out location ({target.destination}) as {file_name}"
        if target and file_name
        else f"NOT sent anywhere: no opt-out location is configured ({DESTINATION_VAR}, {FORMAT_VAR}); "
        "tell dA through the agreed channel"
    )
    step = ("Next step: nothing to do unless dA asks; the opt-out file is at the opt-out location"
            if target and file_name else
            f"Next step: tell dA about these opt-outs through the agreed channel, or set {DESTINATION_VAR} so "
            "the next run sends them")
    return f"{count:,} contact(s) opted out {since}; never in the onboarding/update files; {where}. {step}"
