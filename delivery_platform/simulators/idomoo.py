"""Plays Idomoo on a local account folder (demo and tests only; production never imports it):
answers each upload in Uploads with a PURL file in Downloads, then its flag, as
`idomoo-batch-mode.txt` "General Process" 3 and "Special Features" 2 describe."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import dagster as dg

from ..vendors.idomoo import spec
from ..vendors.idomoo.assets import IdomooSettings


def simulate(account_root: Path, s: IdomooSettings, fail_keys: tuple[str, ...] = ()) -> list[str]:
    """Play Idomoo on a local account folder: answer each upload with a PURL file (rows whose key is
    in `fail_keys` go to an error file instead), then its flag."""
    from ..formats.delimited import DELIMITERS, ENCODINGS

    uploads, downloads = account_root / s.uploads_folder, account_root / s.downloads_folder
    downloads.mkdir(parents=True, exist_ok=True)
    made = []
    for upload in sorted(uploads.glob("*")) if uploads.exists() else []:
        if upload.name.startswith(".") or upload.suffix in (".gpg", ".pgp"):
            continue
        purl = downloads / spec.purl_name(upload.name, s.purl_prefix, s.purl_suffix)
        if purl.exists():
            continue
        raw = upload.read_bytes()
        if upload.suffix == ".zip":
            with zipfile.ZipFile(upload) as zf:
                raw = zf.read(zf.namelist()[0])
        sep = DELIMITERS[s.delimiter]
        rows = list(csv.reader(io.StringIO(raw.decode(ENCODINGS[s.encoding.lower()]), newline=""), delimiter=sep))
        out = io.StringIO()
        writer = csv.writer(out, delimiter=sep, lineterminator="\n")
        writer.writerow(rows[0] + list(spec.PURL_COLUMNS))
        key_at = rows[0].index(s.key_header)
        failed = [row for row in rows[1:] if row[key_at] in fail_keys]
        for row in rows[1:]:
            if row[key_at] not in fail_keys:
                writer.writerow(row + [f"https://cdn.idomoo.example/thumb/{row[key_at]}.jpg",
                                       f"https://video.idomoo.example/lp/{row[key_at]}"])
        if failed:
            errors = io.StringIO()
            err = csv.writer(errors, delimiter=sep, lineterminator="\n")
            err.writerow([s.key_header, "error"])
            err.writerows([[row[key_at], "render failed: missing asset for parameter"] for row in failed])
            (downloads / f"{s.error_prefix}{upload.name}").write_bytes(errors.getvalue().encode(ENCODINGS[s.encoding.lower()]))
        partial = purl.with_name("." + purl.name + ".part")
        partial.write_bytes(out.getvalue().encode(ENCODINGS[s.encoding.lower()]))
        os.replace(partial, purl)
        purl.with_name(purl.name + ".flg").write_bytes(b"")
        made.append(purl.name)
    return made


def round_trip(defs: dg.Definitions, instance: dg.DagsterInstance, outcome: dict) -> list[str]:
    """After the day's upload: let the simulator answer, tick the Downloads sensor and take each
    new PURL file in (with its checks). Returns lines for the demo's table."""
    from .. import settings
    from ..vendors.idomoo.assets import settings_from_env
    from ..vendors.idomoo.downloads import downloads_sensor, purl_every_row_came_back, purl_files, \
        purl_links_are_https, purl_results

    extra = []
    resources = {"idomoo_destination": defs.resources["idomoo_destination"], "idomoo_settings": settings_from_env()}
    if not (outcome["success"] and resources["idomoo_destination"].kind == "local"):
        return extra
    made = simulate(settings.outbox_dir() / "idomoo", resources["idomoo_settings"])
    extra.append(f"simulator answered with {', '.join(made) or 'nothing new'}")
    context = dg.build_sensor_context(instance=instance)
    result = downloads_sensor(context, resources["idomoo_destination"].process_config_and_initialize(),
                              resources["idomoo_settings"])
    fresh = [r for r in result.run_requests if not instance.has_dynamic_partition(purl_files.name, r.partition_key)]
    instance.add_dynamic_partitions(purl_files.name, [r.partition_key for r in fresh])
    for request in fresh:
        run = dg.materialize([purl_results, purl_links_are_https, purl_every_row_came_back],
                             partition_key=request.partition_key, instance=instance, tags=request.tags,
                             resources={**resources, "ledger": defs.resources["ledger"],
                                        "warehouse": defs.resources["warehouse"]}, raise_on_error=False)
        checks = run.get_asset_check_evaluations()
        extra.append(f"PURL {request.partition_key}: {'ingested' if run.success else 'FAILED'}, checks "
                     + ", ".join(f"{c.check_name} {'ok' if c.passed else 'FAILED'}" for c in checks))
    return extra
