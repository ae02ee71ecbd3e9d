"""`python -m delivery_platform.demo`: run yesterday's deliveries on the embedded default and
print what was delivered (vendor, files, rows, bytes, checks).

Each vendor's daily job is `<vendor>_daily_delivery`; `simulators.answer` then plays the vendors
that send files back (Idomoo's PURL files, dA's match export), taken in through their sensors.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from . import simulators
from .core import clock
from .definitions import build_defs
from .ledger import Ledger
from .vendors import VENDORS, vendor as vendor_entry


def run_daily(defs: dg.Definitions, instance: dg.DagsterInstance, vendor: str, partition: str) -> dict | None:
    """Every daily job of the vendor's deliverables, in process, for `partition`."""
    jobs = list(dict.fromkeys(d.job_name for d in vendor_entry(vendor).deliverables))
    outcome = {"success": True, "run_id": "", "checks_passed": 0, "checks_failed": []}
    for job_name in jobs:
        try:
            job = defs.resolve_job_def(job_name)
        except Exception:
            return None
        result = job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)
        checks = result.get_asset_check_evaluations()
        outcome["success"] &= result.success
        outcome["run_id"] = ", ".join(filter(None, (outcome["run_id"], result.run_id)))
        outcome["checks_passed"] += sum(1 for c in checks if c.passed)
        outcome["checks_failed"] += [c.check_name + (" (warning)" if c.severity == dg.AssetCheckSeverity.WARN else "")
                                     for c in checks if not c.passed]
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery_platform.demo")
    parser.add_argument("--partition", default=None, help="YYYY-MM-DD (default: yesterday, UTC)")
    args = parser.parse_args(argv)
    partition = args.partition or clock.yesterday().isoformat()
    defs = build_defs("local")
    dg.Definitions.validate_loadable(defs)
    instance = dg.DagsterInstance.get()
    ledger = Ledger()
    print(f"definitions load: {len(list(defs.resolve_all_asset_specs()))} assets, "
          f"{len(defs.resolve_asset_graph().asset_check_keys)} checks")
    print(f"delivering partition {partition} on the embedded default\n")
    failed = False
    rows = []
    for entry in VENDORS:
        vendor = entry.name
        outcome = run_daily(defs, instance, vendor, partition)
        if outcome is not None:  # the vendor's side, played: what it sends back, taken in
            outcome["extra"] = simulators.answer(vendor, defs, instance, outcome, partition)
        if outcome is None:
            rows.append((vendor, "-", "-", "-", "-", "no daily delivery job yet"))
            continue
        failed |= not outcome["success"]
        delivered = [d for d in ledger.history(vendor, status="delivered") if d.partition_key == partition]
        checks = f"{outcome['checks_passed']} passed" + (f", failed: {', '.join(outcome['checks_failed'])}" if outcome["checks_failed"] else "")
        rows.append((vendor, len(delivered), sum(d.rows or 0 for d in delivered), sum(d.bytes or 0 for d in delivered),
                     checks, "ok" if outcome["success"] else f"FAILED (run {outcome['run_id']})"))
        for d in delivered:
            rows.append(("", "", "", "", "", f"{d.remote_uri}"))
        for extra in outcome.get("extra", []):
            rows.append(("", "", "", "", "", extra))
    header = ("vendor", "files", "rows", "bytes", "checks", "result")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(5)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  result")
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)) + "  " + str(r[5]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
