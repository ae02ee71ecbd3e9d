"""Idomoo batch mode (issue 4): data files to Uploads, PURL files and flags back from Downloads."""

from __future__ import annotations

import dagster as dg

from ...factory import build_deliverables, build_jobs
from ...registry import Vendor
from .assets import CHAINS, STORYBOARDS, settings_from_env
from .downloads import build_sensor, downloads_sensor, purl_every_row_came_back, purl_files, purl_links_are_https, \
    purl_results, simulate


def build_defs(env: str) -> dg.Definitions:
    assets, checks = build_deliverables(CHAINS)
    jobs, schedules = build_jobs("idomoo", CHAINS, env, exclude=dg.AssetSelection.assets(purl_results),
                                 description="The day's data file for the Idomoo project, uploaded to the SFTP "
                                             "Uploads folder.")
    return dg.Definitions(assets=[*assets, purl_results], asset_checks=[*checks, purl_links_are_https,
                                                                        purl_every_row_came_back],
                          jobs=jobs, schedules=schedules, sensors=[build_sensor(env == "production")],
                          resources={board.settings_key: board.settings() for board in STORYBOARDS})


def demo(defs: dg.Definitions, instance: dg.DagsterInstance, partition: str, run_daily) -> dict:
    """Upload, let the simulator answer, tick the Downloads sensor and take the PURL file in."""
    from ... import settings
    from .assets import settings_from_env as current

    outcome = run_daily(defs, instance, "idomoo", partition) or {"success": False, "run_id": "-", "checks_passed": 0,
                                                                 "checks_failed": []}
    extra = []
    resources = {"idomoo_destination": defs.resources["idomoo_destination"], "idomoo_settings": current()}
    if outcome["success"] and resources["idomoo_destination"].kind == "local":
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
    return {**outcome, "extra": extra}


VENDOR = Vendor(
    name="idomoo", title="Idomoo", document="docs/idomoo.md",
    deliverables=tuple(c.deliverable for c in CHAINS),
    destination_kinds=("local", "sftp"),  # batch mode: the SFTP account's Uploads folder
    build_defs=build_defs, settings=settings_from_env, demo=demo, returns=("purl_files",),
    extras={"preflight_probes": ("pgp_keys",),
            "preflight_inputs": lambda: {"folder": settings_from_env().uploads_folder, "pgp": settings_from_env(),
                                         "pgp_secret": "IDOMOO_PGP_PASSPHRASE"}})
