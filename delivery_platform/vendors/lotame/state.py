"""What Lotame holds, as far as we know: the state implied by the files we delivered.

Delta files are computed against this, not against yesterday's source (issue 5): after each
successful delivery the day's full state (userid, idtype, segment, timestamp) and the records
actually sent are kept under `data/state/lotame/<partition>.*`. The ledger says which
partitions were delivered; these files say what they contained.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ... import settings
from ...core import clock
from ...ledger import Ledger

VENDOR, DELIVERABLE = "lotame", "segmentmembership"


def state_dir() -> Path:
    return settings.data_dir() / "state" / VENDOR


@dataclass(frozen=True)
class Delivered:
    partition: str
    mode: str  # comprehensive | delta
    state: Path  # full state after this file (userid, idtype, segment, timestamp)
    records: Path  # the records sent (the model's columns)


def delivered_history(ledger: Ledger, before: str) -> list[Delivered]:
    """Partitions delivered before `before` whose state files exist, oldest first."""
    keys = sorted({d.partition_key for d in ledger.history(VENDOR, DELIVERABLE, status="delivered")
                   if d.partition_key < before})
    out = []
    for key in keys:
        meta = state_dir() / f"{key}.json"
        if meta.exists():
            info = json.loads(meta.read_text())
            out.append(Delivered(key, info["mode"], state_dir() / f"{key}.state.parquet",
                                 state_dir() / f"{key}.records.parquet"))
    return out


def plan_mode(history: list[Delivered], partition: str, wanted: str, full_refresh_days: int) -> tuple[str, str, Delivered | None]:
    """(mode, reason, previous) for a partition: delta only when there is a delivered base and the
    last comprehensive file is younger than `full_refresh_days`."""
    if wanted == "comprehensive":
        return "comprehensive", "configured mode is comprehensive", None
    if not history:
        return "comprehensive", "first delivery: always comprehensive", None
    last_full = next((h for h in reversed(history) if h.mode == "comprehensive"), None)
    if last_full is None:
        return "comprehensive", "no comprehensive file in the delivered history", None
    age = (dt.date.fromisoformat(partition) - dt.date.fromisoformat(last_full.partition)).days
    if age >= full_refresh_days:
        return "comprehensive", (f"last comprehensive file ({last_full.partition}) is {age} days old; "
                                 f"a comprehensive file is due every {full_refresh_days} days"), None
    previous = history[-1]
    return "delta", f"changes since the file delivered for {previous.partition}", previous


def chain_since_last_comprehensive(history: list[Delivered]) -> list[Delivered]:
    """The last comprehensive delivery and every delta after it."""
    for i in range(len(history) - 1, -1, -1):
        if history[i].mode == "comprehensive":
            return history[i:]
    return []


def record_delivered(partition: str, mode: str, staged_state: Path, staged_records: Path) -> None:
    """Keep what was delivered (called only after the delivery succeeded)."""
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for source, suffix in ((staged_state, "state.parquet"), (staged_records, "records.parquet")):
        target = folder / f"{partition}.{suffix}"
        partial = folder / f".{partition}.{suffix}.{os.getpid()}"
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    meta = folder / f"{partition}.json"
    partial = folder / f".{partition}.json.{os.getpid()}"
    partial.write_text(json.dumps({"mode": mode, "recorded_at": clock.now().isoformat()}))
    os.replace(partial, meta)
