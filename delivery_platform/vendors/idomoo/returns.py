"""Every upload is answered: when each data file went up, and which PURL files are overdue.

The upload time is recorded by the delivery step (by `core.clock`, so a simulated calendar sees
its own days) under `data/state/idomoo/uploads/`; the Downloads sensor compares it with the
configured `purl_return_hours` and alerts once per data file whose PURL (or error) file has not
arrived by then, naming the data file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ... import settings
from . import spec

KEEP_DAYS = 30  # Idomoo keeps PURL files for 30 days (DIGEST 5.2): older uploads are not chased


def uploads_dir() -> Path:
    return settings.data_dir() / "state" / "idomoo" / "uploads"


def record_upload(name: str, at: float) -> None:
    """Remember that `name` (as uploaded, e.g. `Uploads/x.csv`) went up at `at` (epoch seconds)."""
    folder = uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name.replace("/", "~") + ".json")
    if target.exists():  # the first upload time counts (a re-run that sent nothing keeps it)
        return
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_text(json.dumps({"name": name, "uploaded_at": at}))
    os.replace(partial, target)


def uploads() -> list[dict]:
    folder = uploads_dir()
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []


def overdue_returns(listing, s, now: float) -> list[str]:
    """Uploaded names whose PURL file (or error file) is not in the Downloads listing (any
    sub-folder) `s.purl_return_hours` after the upload."""
    present = {f.name.rsplit("/", 1)[-1] for f in listing}
    overdue = []
    for upload in uploads():
        age = now - upload["uploaded_at"]
        if age <= s.purl_return_hours * 3600 or age > KEEP_DAYS * 86400:
            continue
        base = upload["name"].rsplit("/", 1)[-1]
        answers = {spec.purl_name(base, s.purl_prefix, s.purl_suffix), f"{s.error_prefix}{base}"}
        if not answers & present:
            overdue.append(upload["name"])
    return overdue
