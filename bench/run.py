"""`python -m bench.run` (`make bench`): the benchmarks of issue 9 in one run on this machine.

Seeds warehouses at the chosen scales, runs every measured step in its own process (its peak
memory is its own: `ru_maxrss`), and writes bench/results/<time>.json and the README table
between `<!-- bench:start -->` and `<!-- bench:end -->`. `--quick` is a small smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from delivery_platform.core import clock
from delivery_platform.vendors import NAMES

ROOT = Path(__file__).resolve().parents[1]
VENDORS = NAMES  # the registry's vendors
EVENTS_PER_SCALE = 20_000  # iSpot events a day per unit of scale (warehouse/seed.py)


def measure(what: str, *args, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.measure", what, *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"bench step {what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(line[6:])


def seed(path: Path, scale: float, days: int, end: dt.date) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "delivery_platform.warehouse", "seed", "--days", str(days), "--scale", str(scale),
                    "--end-date", end.isoformat(), "--path", str(path)], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def env_for(work: Path, warehouse: Path, name: str) -> dict:
    data = work / name
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    home = work / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DELIVERY_")}
    env.update({"DELIVERY_DATA_DIR": str(data), "DELIVERY_WAREHOUSE_PATH": str(warehouse), "DAGSTER_HOME": str(home),
                "DELIVERY_RETRY_MAX": "0"})
    return env


def lotame_days(work: Path, end: dt.date, sizes: list[int], modes: list[str]) -> list[dict]:
    """Issue 22 item 10: the Lotame job at N users a day under the default 512 MB DuckDB limit, on a
    warehouse holding only the Lotame tables; per mode, two days in one data folder (the first is
    always comprehensive, the second is the mode's file against what the first left at Lotame)."""
    out = []
    for users in sizes:
        wh = work / f"lotame{users}.duckdb"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "delivery_platform.warehouse", "seed", "--days", "2",
                        "--lotame-users", str(users), "--tables", "lotame_users,lotame_segment_memberships",
                        "--end-date", end.isoformat(), "--path", str(wh)],
                       cwd=ROOT, check=True, capture_output=True)
        seeded = time.perf_counter() - started
        for mode in modes:
            env = env_for(work, wh, f"lotame-{users}-{mode}")
            days = [measure("lotame", (end - dt.timedelta(days=1)).isoformat(), mode, env=env),
                    measure("lotame", end.isoformat(), mode, env=env)]
            out.append({"users": users, "mode": mode, "seed_seconds": seeded, "days": days})
            print("lotame", out[-1], flush=True)
        wh.unlink()
    return out


def median_of(runs: list[dict], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--scale", type=float, default=500, help="500 = 10 million iSpot events in the partition")
    parser.add_argument("--naive-scale", type=float, default=50, help="scale of the pandas + pandera comparison")
    parser.add_argument("--flatness-scales", default="50,500,1500", help="scales for the memory flatness series")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backfill-days", type=int, default=30)
    parser.add_argument("--sensor-files", type=int, default=10_000)
    parser.add_argument("--purl-rows", type=int, default=1_000_000)
    parser.add_argument("--lotame-users", default="2000000,10000000",
                        help="Lotame users a day, per measured size")
    parser.add_argument("--lotame-modes", default="comprehensive,delta",
                        help="Lotame modes (each runs two days: the first is always comprehensive)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (used by a test)")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.naive_scale, args.flatness_scales, args.repeat = 0.5, 0.5, "0.25,0.5", 1
        args.backfill_days, args.sensor_files, args.purl_rows = 2, 500, 10_000
        args.lotame_users, args.lotame_modes = "20000", "delta"
    end = clock.yesterday()
    partition = end.isoformat()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    results: dict = {"machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, Python "
                                f"{platform.python_version()}",
                     "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
                     "taken_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "partition": partition}
    try:
        main_wh = work / "main.duckdb"
        results["seed_seconds"] = seed(main_wh, args.scale, 1, end)
        rows = int(EVENTS_PER_SCALE * args.scale)
        print(f"seeded {rows:,} iSpot events a day in {results['seed_seconds']:.1f} s", flush=True)
        e2e = [measure("e2e", "ispot", partition, env=env_for(work, main_wh, f"e2e{i}")) for i in range(args.repeat)]
        copy = [measure("bare_copy", partition, work / f"copy{i}", env=env_for(work, main_wh, "copy"))
                for i in range(args.repeat)]
        results["ispot"] = {"rows": e2e[0]["rows"], "bytes": e2e[0]["bytes"], "e2e_seconds": median_of(e2e),
                            "e2e_peak_mb": max(r["peak_mb"] for r in e2e), "copy_seconds": median_of(copy),
                            "copy_peak_mb": max(r["peak_mb"] for r in copy), "success": all(r["success"] for r in e2e)}
        print("ispot", results["ispot"], flush=True)
        # the part files of one e2e run: compression against pigz on the same bytes
        parts = sorted((work / "e2e0").rglob("conversions_*.csv"))
        if parts and shutil.which("pigz"):
            part = parts[0]
            ours = [measure("compress", part, 6, env=env_for(work, main_wh, "gz")) for _ in range(args.repeat)]
            pigz = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                subprocess.run(["pigz", "-6", "-c", "-p", str(os.cpu_count() or 2), str(part)], stdout=subprocess.DEVNULL,
                               check=True)
                pigz.append({"seconds": time.perf_counter() - started})
            results["gzip"] = {"bytes_in": part.stat().st_size, "ours_seconds": median_of(ours), "pigz_seconds": median_of(pigz),
                               "ours_bytes": ours[0]["bytes"]}
            print("gzip", results["gzip"], flush=True)
        # the naive pandas path, at its own scale, against our e2e at the same scale
        naive_wh = work / "naive.duckdb"
        seed(naive_wh, args.naive_scale, 1, end)
        naive = measure("naive", partition, work / "naive.csv", env=env_for(work, naive_wh, "naive"))
        same = measure("e2e", "ispot", partition, env=env_for(work, naive_wh, "e2e-naive"))
        results["naive"] = {"rows": naive["rows"], "naive_seconds": naive["seconds"], "naive_peak_mb": naive["peak_mb"],
                            "e2e_seconds": same["seconds"], "e2e_peak_mb": same["peak_mb"]}
        print("naive", results["naive"], flush=True)
        flat = []
        for scale in [float(s) for s in args.flatness_scales.split(",")]:
            wh = main_wh if scale == args.scale else work / f"flat{scale}.duckdb"
            if wh != main_wh:
                seed(wh, scale, 1, end)
            run = measure("e2e", "ispot", partition, env=env_for(work, wh, f"flat{scale}"))
            flat.append({"rows": run["rows"], "seconds": run["seconds"], "peak_mb": run["peak_mb"]})
            if wh != main_wh:
                wh.unlink()
        results["flatness"] = flat
        print("flatness", flat, flush=True)
        loads = [measure("definitions_load", env=env_for(work, main_wh, "defs")) for _ in range(5)]
        results["definitions_load_seconds"] = median_of(loads)
        tick = measure("sensor_tick", work / "idomoo-account", args.sensor_files, env=env_for(work, main_wh, "tick"))
        results["sensor"] = {"files": args.sensor_files, **tick}
        purl = measure("purl_ingest", args.purl_rows, work / "purl-account", env=env_for(work, main_wh, "purl"))
        results["purl"] = purl
        print("sensor", tick, "purl", purl, flush=True)
        # a backfill of every vendor over N days, in parallel processes on one embedded warehouse and ledger
        small = work / "small.duckdb"
        seed(small, 1, args.backfill_days + 1, end)
        days = [(end - dt.timedelta(days=d)).isoformat() for d in reversed(range(args.backfill_days))]
        jobs = [f"{v}:{day}" for v in VENDORS for day in days]
        workers = 4
        # each vendor's days in one worker, oldest first, as the run queue's per-vendor limit and the
        # chained deliverables (Lotame deltas) need: a later day is never sent before an earlier one
        shards = [[f"{v}:{day}" for v in VENDORS[i::workers] for day in days] for i in range(workers)]
        env = env_for(work, small, "backfill")
        env["ISPOT_ALLOW_REPROCESSING"] = "true"  # iSpot refuses days older than 12 (paid) unless told
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            outs = list(pool.map(lambda i: measure("backfill", ",".join(shards[i]), env=env), range(workers)))
        results["backfill"] = {"runs": len(jobs), "workers": workers, "seconds": time.perf_counter() - started,
                               "failures": sum((o["failures"] for o in outs), [])}
        print("backfill", results["backfill"], flush=True)
        results["lotame"] = lotame_days(work, end, [int(n) for n in args.lotame_users.split(",")],
                                        args.lotame_modes.split(","))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{results['taken_at'].replace(':', '')}.json").write_text(json.dumps(results, indent=1))
    table = render(results)
    print(table)
    if not args.no_readme and not args.quick:
        from delivery_platform.spec_docs import README, splice

        README.write_text(splice(README.read_text(), table, "<!-- bench:start -->", "<!-- bench:end -->"))
    return 0


def render(r: dict) -> str:
    i, n, g = r["ispot"], r["naive"], r.get("gzip")
    flat = r["flatness"]
    peaks = [f["peak_mb"] for f in flat]
    spread = (max(peaks) - min(peaks)) / min(peaks) if peaks else 0
    rows = [
        ("iSpot end-to-end materialization (extract, spec checks, files, file checks, publish)",
         f"{i['rows']:,} rows, {i['bytes'] / 1e9:.2f} GB", f"{i['e2e_seconds']:.1f} s", f"{i['rows'] / i['e2e_seconds']:,.0f}",
         f"{i['e2e_peak_mb']:,.0f} MB", f"{i['e2e_seconds'] / i['copy_seconds']:.2f}× the bare COPY (target ≤ 2×)"),
        ("bare DuckDB COPY of the same bytes (the limit)", f"{i['rows']:,} rows", f"{i['copy_seconds']:.1f} s",
         f"{i['rows'] / i['copy_seconds']:,.0f}", f"{i['copy_peak_mb']:,.0f} MB", "—"),
        ("naive: .df() + pandera (pandas) + to_csv(QUOTE_ALL)", f"{n['rows']:,} rows", f"{n['naive_seconds']:.1f} s",
         f"{n['rows'] / n['naive_seconds']:,.0f}", f"{n['naive_peak_mb']:,.0f} MB",
         f"ours at the same size: {n['e2e_seconds']:.1f} s, {n['e2e_peak_mb']:,.0f} MB → "
         f"{n['naive_seconds'] / n['e2e_seconds']:.1f}× faster (target ≥ 5×)"),
    ]
    if g:
        rows.append(("gzip of one 190 MB part: ours (multi-member, all cores) vs pigz -6", f"{g['bytes_in'] / 1e6:.0f} MB",
                     f"{g['ours_seconds']:.2f} s vs {g['pigz_seconds']:.2f} s", "—", "—",
                     f"{g['ours_seconds'] / g['pigz_seconds']:.2f}× pigz (target ≤ 1.3×)"))
    rows += [
        ("memory flatness: iSpot end-to-end at " + ", ".join(f"{f['rows'] / 1e6:g} M" for f in flat) + " rows", "—",
         ", ".join(f"{f['seconds']:.1f} s" for f in flat), "—", ", ".join(f"{p:,.0f} MB" for p in peaks),
         f"peaks differ by {spread:.0%} (target < 25%, each < 1 GB)"),
        ("definitions load (median of 5 processes)", "—", f"{r['definitions_load_seconds']:.2f} s", "—", "—", "target < 2 s"),
        (f"Idomoo sensor tick over {r['sensor']['files']:,} old PURL files (+ flags)", "—", f"{r['sensor']['seconds']:.3f} s",
         "—", f"{r['sensor']['peak_mb']:,.0f} MB",
         f"first tick {r['sensor']['first_tick_seconds']:.2f} s for {r['sensor']['first_tick_requests']:,} runs; target < 1 s"),
        (f"ingest a {r['purl']['rows']:,}-row PURL file", f"{r['purl']['rows']:,} rows", f"{r['purl']['seconds']:.1f} s",
         f"{r['purl']['rows'] / r['purl']['seconds']:,.0f}", f"{r['purl']['peak_mb']:,.0f} MB", "—"),
        (f"backfill: {r['backfill']['runs']} runs (every vendor × {r['backfill']['runs'] // 5} days), "
         f"{r['backfill']['workers']} processes at once", "scale 1", f"{r['backfill']['seconds']:.1f} s", "—", "—",
         f"{len(r['backfill']['failures'])} failed runs (target 0, no lock failures)"),
    ]
    for lot in r.get("lotame", []):
        first, second = lot["days"]
        rows.append((f"Lotame daily job at {lot['users'] / 1e6:g} M users, {lot['mode']} mode "
                     "(`dagster job execute`, DuckDB 512 MB)",
                     f"{second['rows']:,} records, {second['bytes'] / 1e9:.2f} GB gzipped",
                     f"{first['seconds']:.1f} s + {second['seconds']:.1f} s",
                     f"{second['rows'] / second['seconds']:,.0f}",
                     f"{first['run_peak_mb']:,.0f} MB, {second['run_peak_mb']:,.0f} MB",
                     f"first day {first['mode']}, second {second['mode']}; "
                     f"{'both delivered' if first['success'] and second['success'] else 'FAILED'} "
                     "(target: delivered, peak < 1 GB)"))
    lines = [f"Measured {r['taken_at']} on {r['machine']}; partition {r['partition']}.", "",
             f"Command: `{r['command'].strip()}` (`make bench`). Raw figures: `bench/results/*.json`.", "",
             "| what | size | median time | rows/s | peak memory | against the target |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
