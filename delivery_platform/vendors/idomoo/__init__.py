"""Idomoo batch mode (issue 4): data files to Uploads, PURL files and flags back from Downloads."""

from __future__ import annotations

import dagster as dg

from ...factory import build_deliverables, build_jobs
from ...registry import Vendor
from ...returns.pipeline import build_return_defs
from .assets import CHAINS, STORYBOARDS, settings_from_env
from .downloads import IDOMOO_PURLS, downloads_sensor, purl_every_row_came_back, purl_files, purl_links_are_https, \
    purl_results

__all__ = ["downloads_sensor", "purl_every_row_came_back", "purl_files", "purl_links_are_https", "purl_results"]


def build_defs(env: str) -> dg.Definitions:
    assets, checks = build_deliverables(CHAINS)
    jobs, schedules = build_jobs("idomoo", CHAINS, env, exclude=dg.AssetSelection.assets(purl_results),
                                 description="The day's data file for the Idomoo project, uploaded to the SFTP "
                                             "Uploads folder.")
    return dg.Definitions.merge(
        dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs, schedules=schedules,
                       resources={board.settings_key: board.settings() for board in STORYBOARDS}),
        build_return_defs(IDOMOO_PURLS, env == "production"))  # the PURL files back: sensor, ingest, checks


VENDOR = Vendor(
    name="idomoo", title="Idomoo", document="docs/idomoo.md",
    deliverables=tuple(c.deliverable for c in CHAINS),
    destination_kinds=("local", "sftp"),  # batch mode: the SFTP account's Uploads folder
    build_defs=build_defs, settings=settings_from_env, returns=(IDOMOO_PURLS,),
    extras={"preflight_probes": ("pgp_keys",),
            "preflight_inputs": lambda: {"folder": settings_from_env().uploads_folder, "pgp": settings_from_env(),
                                         "pgp_secret": "IDOMOO_PGP_PASSPHRASE"}})
