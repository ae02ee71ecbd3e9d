"""Drift guard: WARN checks on each `_delivery` asset comparing the partition with the trailing
14 delivered partitions.

- row count and bytes (from the ledger) outside median ± k·MAD, k = `DRIFT_MAD_K` (default 3);
  the MAD is floored at `DRIFT_MIN_SPREAD` (default 2%) of the median so a perfectly steady
  series does not flag a one-row change;
- a column's null share or distinct share (of the checked rows) moving more than k·MAD and at least
  `DRIFT_MIN_SHARE_JUMP` (default 0.10) from its median;
- the warehouse source's columns against warehouse/schema.py (added, dropped, retyped).
Each partition's column profile is kept beside the ledger (`profiles/`), so history does not
depend on staging files that may be cleaned up. Fewer than `DRIFT_MIN_HISTORY` (default 5)
earlier partitions: nothing is judged yet, and the check says so.
"""

import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from ..checked import read_checked
from ..ledger import Ledger
from ..partitions import daily
from ..resources import LedgerResource
from ..core.files import write_atomic
from ..warehouse.resource import WarehouseResource
from ..warehouse.schema import BY_NAME
from ..registry import Deliverable
from ..state_store import durable

HISTORY = 14
BARS = "▁▂▃▄▅▆▇█"


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class Band:
    median: float
    low: float
    high: float

    def holds(self, value: float) -> bool:
        return self.low <= value <= self.high


def band(history: list[float], k: float, min_spread: float = 0.0, floor: float = 0.0) -> Band:
    """median ± k·MAD of `history`, the MAD at least `min_spread`·|median| and `floor`."""
    median = statistics.median(history)
    mad = statistics.median(abs(v - median) for v in history)
    spread = k * max(mad, min_spread * abs(median), floor)
    return Band(median, median - spread, median + spread)


# --- what was delivered, per partition ---------------------------------------------------------
def delivered_totals(ledger: Ledger, vendor: str, deliverable: str) -> dict[str, tuple[int, int]]:
    """partition -> (rows, bytes) of its latest delivered file set (markers have no rows)."""
    latest: dict[tuple[str, str], object] = {}
    for r in ledger.history(vendor, deliverable, status="delivered"):
        latest[(r.partition_key, r.file_name)] = r
    totals: dict[str, tuple[int, int]] = {}
    for (key, _), r in latest.items():
        rows, size = totals.get(key, (0, 0))
        totals[key] = (rows + (r.rows or 0), size + (r.bytes or 0))
    return totals


# --- column profiles --------------------------------------------------------------------------
# Taken by the spec check in its own pass over the rows (checked.py), so no step reads them again.
def profiles_dir(ledger: Ledger, d: Deliverable) -> Path:
    return ledger.path.parent / "profiles" / d.vendor / d.name


def keep_profile(ledger: Ledger, d: Deliverable, partition_key: str, checked: dict | None) -> dict | None:
    """Keep the profile the spec check took of the partition's rows (None when they were never checked)."""
    if not checked or not checked.get("profile"):
        return None
    doc = checked["profile"]
    write_atomic(profiles_dir(ledger, d) / f"{partition_key}.json", json.dumps(doc))
    kept = durable()  # with state in object storage, there too: history outlives the worker
    if kept is not None:
        kept.put_bytes(_profile_key(d, partition_key), json.dumps(doc))
    return doc


def _profile_key(d: Deliverable, partition_key: str) -> str:
    return f"profiles/{d.vendor}/{d.name}/{partition_key}.json"


def stored_profile(ledger: Ledger, d: Deliverable, partition_key: str) -> dict | None:
    kept = durable()
    if kept is not None and kept.exists(_profile_key(d, partition_key)):
        return json.loads(kept.read_bytes(_profile_key(d, partition_key)))
    path = profiles_dir(ledger, d) / f"{partition_key}.json"
    return json.loads(path.read_text()) if path.exists() else None


# --- the warehouse source's schema ---------------------------------------------------------------
def schema_drift(warehouse: WarehouseResource, table: str) -> list[str]:
    """Differences between the live table and its declaration in warehouse/schema.py."""
    declared = {c.name: c.type.upper() for c in BY_NAME[table].columns}
    with warehouse.connect() as con:
        live = {name: kind.upper() for name, kind, *_ in con.execute(f"DESCRIBE {table}").fetchall()}
    changes = [f"column {c} added ({live[c]})" for c in live if c not in declared]
    changes += [f"column {c} dropped" for c in declared if c not in live]
    changes += [
        f"column {c} retyped {declared[c]} -> {live[c]}"
        for c in declared
        if c in live and live[c] != declared[c]
    ]
    return changes


# --- the judgement (pure) ----------------------------------------------------------------------
def judge(today: dict, history: dict[str, dict], k: float, min_history: int) -> list[str]:
    """Findings for today's {rows, bytes, profile} against earlier partitions' (by partition key)."""
    findings = []
    keys = sorted(history)
    if len(keys) < min_history:
        return findings
    for measure in ("rows", "bytes"):
        series = [history[key][measure] for key in keys]
        b = band(series, k, min_spread=_env("DRIFT_MIN_SPREAD", 0.02))
        if not b.holds(today[measure]):
            findings.append(
                f"{measure} {today[measure]:,} outside {b.low:,.0f} .. {b.high:,.0f} "
                f"(median {b.median:,.0f} of the last {len(keys)} deliveries)"
            )
    profiles = [history[key].get("profile") for key in keys if history[key].get("profile")]
    current = (today.get("profile") or {}).get("columns", {})
    if len(profiles) >= min_history:
        for column, shares in current.items():
            for share in ("null_share", "distinct_share"):
                series = [p["columns"][column][share] for p in profiles if column in p.get("columns", {})]
                if len(series) < min_history:
                    continue
                b = band(series, k, floor=_env("DRIFT_MIN_SHARE_JUMP", 0.10) / max(k, 1e-9))
                if not b.holds(shares[share]):
                    findings.append(
                        f"{column}: {share.replace('_', ' ')} {shares[share]:.0%} (median "
                        f"{b.median:.0%} of the last {len(series)})"
                    )
    return findings


def spark(values: list[float]) -> str:
    top, low = max(values, default=0), min(values, default=0)
    span = (top - low) or 1
    return "".join(BARS[int((v - low) / span * (len(BARS) - 1))] for v in values)


def series_markdown(keys: list[str], rows: list[int], sizes: list[int], today_key: str) -> str:
    lines = [
        f"rows  `{spark(rows)}`",
        "",
        f"bytes `{spark(sizes)}`",
        "",
        "| partition | rows | bytes |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {'**' + k + '**' if k == today_key else k} | {r:,} | {s:,} |"
        for k, r, s in zip(keys, rows, sizes)
    ]
    return "\n".join(lines)


def build_check(d: Deliverable, partitions_def: dg.PartitionsDefinition | None = None) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=d.delivery_key,
        name="drift",
        blocking=False,
        pool=d.vendor,
        partitions_def=partitions_def or daily,
        description=f"WARN when {d.label}'s rows, bytes, a column's null or distinct share leave the "
        f"band of the last {HISTORY} delivered partitions (median ± k·MAD), or its "
        f"warehouse source {d.source} changed shape.",
    )
    def drift(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, ledger: LedgerResource
    ) -> dg.AssetCheckResult:
        try:
            return evaluate(d, context.partition_key, warehouse, ledger.get())
        except Exception as exc:  # noqa: BLE001 - a guard must never fail the delivery run it watches
            context.log.warning(f"{d.label} drift check could not run: {type(exc).__name__}: {exc}")
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"the drift check could not run: {type(exc).__name__}. Next step: read the "
                "error in this run's log (the delivery itself is not affected) and fix it before the next run",
            )

    return drift


DRIFT_NEXT = (". Next step: compare the `series` metadata with the source table's recent loads; a real "
              "change needs nothing (the band follows it); a broken load: fix it, then re-run the partition "
              "with `redeliver: true` (docs/operating.md)")


def evaluate(d: Deliverable, key: str, warehouse: WarehouseResource, ledger: Ledger) -> dg.AssetCheckResult:
    k, min_history = _env("DRIFT_MAD_K", 3.0), int(_env("DRIFT_MIN_HISTORY", 5))
    totals = delivered_totals(ledger, d.vendor, d.name)
    rows, size = totals.get(key, (0, 0))
    today = {
        "rows": rows,
        "bytes": size,
        "profile": keep_profile(ledger, d, key, read_checked(warehouse.stage_dir(d.vendor, d.name, key))),
    }
    earlier = sorted(p for p in totals if p < key)[-HISTORY:]
    history = {
        p: {"rows": totals[p][0], "bytes": totals[p][1], "profile": stored_profile(ledger, d, p)}
        for p in earlier
    }
    findings = judge(today, history, k, min_history)
    try:
        findings += [f"warehouse {d.source}: {c}" for c in schema_drift(warehouse, d.source)]
    except Exception as exc:  # noqa: BLE001 - an unreadable source is itself worth a warning
        findings.append(f"warehouse {d.source}: cannot read its columns ({type(exc).__name__})")
    judged = len(earlier) >= min_history
    description = (
        "; ".join(findings)
        if findings
        else f"rows {rows:,} and bytes {size:,} within the band of the last {len(earlier)} deliveries"
        if judged
        else f"only {len(earlier)} earlier deliveries (at least {min_history} are needed to "
        "judge rows, bytes and shares); source schema checked"
    )
    keys = earlier + [key]
    series_rows = [history[p]["rows"] for p in earlier] + [rows]
    series_bytes = [history[p]["bytes"] for p in earlier] + [size]
    meta = {
        "rows": dg.MetadataValue.int(rows),
        "bytes": dg.MetadataValue.int(size),
        "history_partitions": dg.MetadataValue.int(len(earlier)),
        "k": dg.MetadataValue.float(k),
        "series": dg.MetadataValue.md(series_markdown(keys, series_rows, series_bytes, key)),
        "findings": dg.MetadataValue.json(findings),
    }
    if len(earlier) >= 1:
        b = band([history[p]["rows"] for p in earlier], k, min_spread=_env("DRIFT_MIN_SPREAD", 0.02))
        meta.update(
            {
                "rows_median": dg.MetadataValue.float(float(b.median)),
                "rows_band_low": dg.MetadataValue.float(float(b.low)),
                "rows_band_high": dg.MetadataValue.float(float(b.high)),
            }
        )
    return dg.AssetCheckResult(
        passed=not findings,
        severity=dg.AssetCheckSeverity.WARN,
        description=description[:1700] + ("" if not findings else DRIFT_NEXT),
        metadata=meta,
    )
