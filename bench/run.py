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


def env_for(work: Path, warehouse: Path, name: str, home: str = "dagster_home") -> dict:
    data = work / name
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    home = work / home
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


def spread(values: list[float]) -> dict:
    """Median, min and max of repeated figures (each figure in the table is one of these)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def pigz(part: Path, level: int) -> dict:
    started = time.perf_counter()
    subprocess.run(["pigz", f"-{level}", "-c", "-p", str(os.cpu_count() or 2), str(part)], stdout=subprocess.DEVNULL,
                   check=True)
    return {"seconds": time.perf_counter() - started}


def gzip_backends() -> list[str]:
    """The deflate libraries importable here: zlib and zlib-ng always (zlib-ng is the product default), isal with the `bench` extra."""
    import importlib.util

    return ["zlib"] + [name for name, module in (("zlib-ng", "zlib_ng"), ("isal", "isal"))
                       if importlib.util.find_spec(module)]


SLING = ("not installable offline, so not in the `bench` extra (tried 2026-11-29): the `sling` wheel (1.6.5) "
         "downloads its binary from GitHub at first use; `sling-linux-amd64` (1.4.11) ships the binary, but "
         "reading Parquet or DuckDB makes it download a DuckDB CLI, and given one (`duckdb-cli` 1.5.6, "
         "`DUCKDB_PATH`) it downloads DuckDB's json extension: both fail without network")


def sling_status() -> str:
    """Issue 20 item 6: whether sling runs here. Its binary wheel is not in the `bench` extra (above)."""
    import importlib.util

    return "installed, not yet measured" if importlib.util.find_spec("sling_linux_amd64") else SLING


def overhead_rounds(work: Path, wh: Path, partition: str, repeat: int, tag: str, *, copy: bool = False,
                    peers: bool = False, naive: bool = False) -> dict:
    """Interleaved rounds on one warehouse: each round runs every compared command once, in turn,
    so the machine's load falls on all of them alike; ratios are taken within a round."""
    rounds = []
    for i in range(repeat):
        one = {"inproc": measure("e2e", "ispot", partition, env=env_for(work, wh, f"{tag}-e2e{i}"))}
        env = env_for(work, wh, f"{tag}-launched{i}", home=f"{tag}-home{i}")
        one["launched"] = measure("launched", "ispot", partition, env=env)
        # the same run launched as the daemon launches it with the warm run launcher (warmed once per process)
        one["warm"] = measure("launched_warm", "ispot", partition,
                              env=env_for(work, wh, f"{tag}-warm{i}", home=f"{tag}-warm-home{i}"))
        if copy:
            one["copy"] = measure("bare_copy", partition, work / f"{tag}-copy{i}", env=env_for(work, wh, "copy"))
            shutil.rmtree(work / f"{tag}-copy{i}", ignore_errors=True)
            # the same lines in the files' order (loaded_at, event_id): the bytes we deliver, without checks
            one["copy_sorted"] = measure("bare_copy", partition, work / f"{tag}-copy{i}", "ordered",
                                         env=env_for(work, wh, "copy"))
            shutil.rmtree(work / f"{tag}-copy{i}", ignore_errors=True)
        if peers:
            one["dlt"] = measure("dlt", partition, work / f"{tag}-dlt{i}", env=env_for(work, wh, "dlt"))
            shutil.rmtree(work / f"{tag}-dlt{i}", ignore_errors=True)
        if naive:
            one["naive"] = measure("naive", partition, work / f"{tag}-naive.csv", env=env_for(work, wh, "naive"))
            (work / f"{tag}-naive.csv").unlink(missing_ok=True)
        if i < repeat - 1 or not copy:  # the last round's files serve the gzip comparison
            for name in (f"{tag}-e2e{i}", f"{tag}-launched{i}", f"{tag}-warm{i}"):
                shutil.rmtree(work / name, ignore_errors=True)
        print(tag, i, json.dumps({k: {f: v.get(f) for f in ("seconds", "run_seconds", "peak_mb", "run_peak_mb",
                                                             "rows", "bytes", "success", "warm_seconds")}
                                  for k, v in one.items()}),
              flush=True)
        rounds.append(one)
    return summarize(rounds)


def summarize(rounds: list[dict]) -> dict:
    """Medians, min and max of each command's time and of the within-round ratios."""
    copy, peers, naive = ("copy" in rounds[0]), ("dlt" in rounds[0]), ("naive" in rounds[0])
    out = {"rows": rounds[0]["inproc"]["rows"], "bytes": rounds[0]["inproc"]["bytes"], "rounds": rounds,
           "success": all(r["inproc"]["success"] and r["launched"]["success"] and r["warm"]["success"] for r in rounds)}
    ratio = lambda a, b: [r[a]["seconds"] / r[b]["seconds"] for r in rounds]  # noqa: E731
    out["inproc"] = spread([r["inproc"]["seconds"] for r in rounds])
    out["inproc_peak_mb"] = spread([r["inproc"]["peak_mb"] for r in rounds])
    out["launched"] = spread([r["launched"]["seconds"] for r in rounds])
    out["launched_run"] = spread([r["launched"]["run_seconds"] for r in rounds])
    out["launched_peak_mb"] = spread([r["launched"]["run_peak_mb"] for r in rounds])
    out["launched_over_inproc"] = spread(ratio("launched", "inproc"))
    out["launched_run_over_inproc"] = spread([r["launched"]["run_seconds"] / r["inproc"]["seconds"]
                                              for r in rounds if r["launched"]["run_seconds"]])
    out["warm"] = spread([r["warm"]["seconds"] for r in rounds])  # launch to end, WarmRunLauncher
    out["warm_run"] = spread([r["warm"]["run_seconds"] for r in rounds])
    out["warm_start"] = spread([r["warm"]["warm_seconds"] for r in rounds])  # once per daemon, not per run
    out["warm_over_inproc"] = spread(ratio("warm", "inproc"))
    if copy:
        out["copy"] = spread([r["copy"]["seconds"] for r in rounds])
        out["copy_peak_mb"] = spread([r["copy"]["peak_mb"] for r in rounds])
        out["inproc_over_copy"] = spread(ratio("inproc", "copy"))
        out["launched_over_copy"] = spread(ratio("launched", "copy"))
        out["copy_sorted"] = spread([r["copy_sorted"]["seconds"] for r in rounds])
        out["inproc_over_copy_sorted"] = spread(ratio("inproc", "copy_sorted"))
        out["warm_over_copy_sorted"] = spread(ratio("warm", "copy_sorted"))
    if peers:
        out["dlt"] = spread([r["dlt"]["seconds"] for r in rounds])
        out["dlt_peak_mb"] = spread([r["dlt"]["peak_mb"] for r in rounds])
        out["dlt_bytes"] = rounds[0]["dlt"]["bytes"]
        out["dlt_rows"] = rounds[0]["dlt"]["rows"]
        out["dlt_over_inproc"] = spread(ratio("dlt", "inproc"))
        out["dlt_over_launched"] = spread(ratio("dlt", "launched"))
    if naive:
        out["naive"] = spread([r["naive"]["seconds"] for r in rounds])
        out["naive_peak_mb"] = spread([r["naive"]["peak_mb"] for r in rounds])
        out["naive_rows"] = rounds[0]["naive"]["rows"]
        out["naive_over_inproc"] = spread(ratio("naive", "inproc"))
        out["naive_over_launched"] = spread(ratio("naive", "launched"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    parser.add_argument("--scale", type=float, default=500, help="500 = 10 million iSpot events in the partition")
    parser.add_argument("--small-scale", type=float, default=5, help="5 = the 100,000-row day of the overhead target")
    parser.add_argument("--flatness-scales", default="50,500,1500", help="scales for the memory flatness series")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backfill-days", type=int, default=30)
    parser.add_argument("--sensor-files", type=int, default=10_000)
    parser.add_argument("--purl-rows", type=int, default=1_000_000)
    parser.add_argument("--lotame-users", default="2000000,10000000",
                        help="Lotame users a day, per measured size ('' to leave Lotame out)")
    parser.add_argument("--lotame-modes", default="comprehensive,delta",
                        help="Lotame modes (each runs two days: the first is always comprehensive)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (used by a test)")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.small_scale, args.flatness_scales, args.repeat = 0.5, 0, "0.5", 1
        args.backfill_days, args.sensor_files, args.purl_rows = 1, 500, 10_000
        args.lotame_users, args.lotame_modes = "5000", "delta"
    end = clock.yesterday()
    partition = end.isoformat()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    results: dict = {"machine": f"{platform.node()}: {os.cpu_count()} cores, "
                                f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                                f"{platform.platform()}, Python {platform.python_version()}",
                     "load_before": os.getloadavg(),
                     "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
                     "taken_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "partition": partition,
                     "repeat": args.repeat}
    try:
        # 1. run overhead on a 100 k-row day: in process vs launched, interleaved
        small_wh = work / "small-day.duckdb"
        if args.small_scale:  # (--quick leaves it out: its large day is small already)
            seed(small_wh, args.small_scale, 1, end)
            results["overhead_small"] = overhead_rounds(work, small_wh, partition, args.repeat, "small")
            small_wh.unlink()
        # 2-6. the 10 M-row day: in process, launched, bare COPY, dlt, naive pandas, interleaved
        main_wh = work / "main.duckdb"
        results["seed_seconds"] = seed(main_wh, args.scale, 1, end)
        print(f"seeded {int(EVENTS_PER_SCALE * args.scale):,} iSpot events a day in {results['seed_seconds']:.1f} s",
              flush=True)
        big = overhead_rounds(work, main_wh, partition, args.repeat, "big", copy=True, peers=True, naive=True)
        results["big"] = big
        results["sling"] = sling_status()
        # 7. gzip: one part of the last round's files, each deflate library vs pigz, interleaved
        parts = sorted((work / f"big-e2e{args.repeat - 1}").rglob("conversions_*.csv"))
        if parts and shutil.which("pigz"):
            part = parts[0]
            gz: dict = {"bytes_in": part.stat().st_size, "level": 6}
            rounds = []
            for _ in range(args.repeat):
                one = {b: measure("compress", part, 6, b, env=env_for(work, main_wh, "gz")) for b in gzip_backends()}
                one["pigz"] = pigz(part, 6)
                rounds.append(one)
            for name in rounds[0]:
                gz[name] = spread([r[name]["seconds"] for r in rounds])
                if name != "pigz":
                    gz[name]["bytes"] = rounds[0][name]["bytes"]
                    gz[name]["valid"] = all(r[name]["valid"] for r in rounds)
                    gz[name]["over_pigz"] = spread([r[name]["seconds"] / r["pigz"]["seconds"] for r in rounds])
            results["gzip"] = gz
            print("gzip", json.dumps(gz), flush=True)
        for i in range(args.repeat):
            shutil.rmtree(work / f"big-e2e{i}", ignore_errors=True)
            shutil.rmtree(work / f"big-launched{i}", ignore_errors=True)
        # 5. memory flatness: the 10 M-row day's peaks from the rounds above, other sizes here
        flat = []
        for scale in [float(s) for s in args.flatness_scales.split(",")]:
            if scale == args.scale:
                flat.append({"rows": big["rows"], "seconds": big["inproc"]["median"],
                             "peak_mb": big["inproc_peak_mb"]["max"], "runs": args.repeat})
                continue
            wh = work / f"flat{scale}.duckdb"
            seed(wh, scale, 1, end)
            runs = 1 if scale > args.scale else args.repeat  # the largest day once: it is the slow one
            got = [measure("e2e", "ispot", partition, env=env_for(work, wh, f"flat{scale}")) for _ in range(runs)]
            shutil.rmtree(work / f"flat{scale}", ignore_errors=True)
            flat.append({"rows": got[0]["rows"], "seconds": median_of(got), "peak_mb": max(g["peak_mb"] for g in got),
                         "runs": runs})
            wh.unlink()
        results["flatness"] = flat
        print("flatness", flat, flush=True)
        loads = [measure("definitions_load", env=env_for(work, main_wh, "defs")) for _ in range(2 if args.quick else 5)]
        results["definitions_load_seconds"] = median_of(loads)
        main_wh.unlink()
        tick = measure("sensor_tick", work / "idomoo-account", args.sensor_files, env=env_for(work, small_wh, "tick"))
        results["sensor"] = {"files": args.sensor_files, **tick}
        purl = measure("purl_ingest", args.purl_rows, work / "purl-account", env=env_for(work, small_wh, "purl"))
        results["purl"] = purl
        print("sensor", tick, "purl", purl, flush=True)
        # 2. backfills of every vendor over N days: in process (4 worker processes), then as the UI
        # launches it (daemon, queue, per-vendor pools of deploy/dagster.yaml)
        small = work / "small.duckdb"
        seed(small, 1, args.backfill_days + 1, end)
        days = [(end - dt.timedelta(days=d)).isoformat() for d in reversed(range(args.backfill_days))]
        # --quick: two vendors (the smoke test's seconds go to the daemon starting, not to the runs)
        vendors = VENDORS[1::3] if args.quick else VENDORS
        jobs = [f"{v}:{day}" for v in vendors for day in days]
        workers = min(4, len(vendors))
        # each vendor's days in one worker, oldest first, as the run queue's per-vendor limit and the
        # chained deliverables (Lotame deltas) need: a later day is never sent before an earlier one
        shards = [[f"{v}:{day}" for v in vendors[i::workers] for day in days] for i in range(workers)]
        env = env_for(work, small, "backfill")
        env["ISPOT_ALLOW_REPROCESSING"] = "true"  # iSpot refuses days older than 12 (paid) unless told
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            outs = list(pool.map(lambda i: measure("backfill", ",".join(shards[i]), env=env), range(workers)))
        results["backfill"] = {"runs": len(jobs), "workers": workers, "seconds": time.perf_counter() - started,
                               "failures": sum((o["failures"] for o in outs), [])}
        print("backfill", results["backfill"], flush=True)
        from bench.launched import backfill as launched_backfill

        if not args.quick:  # the smoke run leaves out the daemon (test_browser_launch launches a backfill with it)
            env = env_for(work, small, "backfill-launched", home="backfill-home")
            env["ISPOT_ALLOW_REPROCESSING"] = "true"
            results["backfill_launched"] = launched_backfill(env, list(vendors), days)
            print("backfill launched", results["backfill_launched"], flush=True)
        if args.lotame_users:
            results["lotame"] = lotame_days(work, end, [int(n) for n in args.lotame_users.split(",")],
                                            args.lotame_modes.split(","))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{results['taken_at'].replace(':', '')}.json").write_text(json.dumps(results, indent=1))
    table = render(results)
    print(table)
    if not args.no_readme and not args.quick:
        from delivery_platform.spec_docs import README, splice

        README.write_text(splice(README.read_text(), table, "<!-- bench:start -->", "<!-- bench:end -->"))
    return 0


def fmt(s: dict, unit: str = " s", digits: int = 1, scale: float = 1.0) -> str:
    """`median (min–max)` of a spread, e.g. `21.7 s (20.1–24.0)`."""
    if not s or s.get("median") is None:
        return "not measured"
    m, lo, hi = (s[k] * scale for k in ("median", "min", "max"))
    if s.get("n", 1) == 1:
        return f"{m:,.{digits}f}{unit}"
    return f"{m:,.{digits}f}{unit} ({lo:,.{digits}f}–{hi:,.{digits}f})"


def ratio(s: dict, digits: int = 2) -> str:
    return fmt(s, "×", digits)


def met(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**not met**")


def render(r: dict) -> str:
    rows: list[tuple[str, ...]] = []
    small, big = r.get("overhead_small"), r.get("big")
    for o in (small, big):
        if not o:
            continue
        warm = o.get("warm")  # results written before the warm run launcher have none
        rows.append((f"1. run overhead, iSpot day of {o['rows']:,} rows: launched as the daemon launches it with "
                     "the warm run launcher (`WarmRunLauncher`, `instance.launch_run`, launch to end; judged on this) "
                     "and cold (`dagster job execute`: own process, loads the code location) vs `execute_in_process`",
                     f"{o['rows']:,} rows",
                     (f"launched warm {fmt(warm)} (run itself {fmt(o['warm_run'])}; warm process start, once: "
                      f"{fmt(o['warm_start'])}); " if warm else "")
                     + f"launched cold {fmt(o['launched'])} (run itself {fmt(o['launched_run'])}); "
                     f"in process {fmt(o['inproc'])}",
                     (f"warm/in process {ratio(o['warm_over_inproc'])}; " if warm else "")
                     + f"cold/in process {ratio(o['launched_over_inproc'])}; "
                     f"cold run itself/in process {ratio(o['launched_run_over_inproc'])}",
                     "≤ 1.5×", met((o["warm_over_inproc"] if warm else o["launched_over_inproc"])["median"] <= 1.5)))
    bl, bi = r.get("backfill_launched"), r.get("backfill")
    if bi and not bl:
        rows.append(("2. backfill launched as the UI does (daemon, queue and pools of deploy/dagster.yaml)",
                     f"{bi['runs']} runs in process", f"not measured in --quick; in process {bi['seconds']:.1f} s "
                     f"with {len(bi['failures'])} failed", "—", "0 failed runs", "—"))
    if bl:
        rows.append((f"2. backfill launched as the UI does (5 job backfills via GraphQL, daemon, queue and pools of "
                     f"deploy/dagster.yaml), beside the in-process backfill ({bi['workers']} processes)",
                     f"{bl['partitions']} runs (5 vendors × {bl['partitions'] // 5} days), scale 1",
                     f"launched {bl['seconds']:.1f} s (a run: median {bl['run_seconds_median'] or 0:.1f} s, "
                     f"max {bl['run_seconds_max'] or 0:.1f} s); in process {bi['seconds']:.1f} s",
                     f"{bl['seconds'] / bi['seconds']:.2f}× the in-process backfill; {len(bl['failures'])} failed "
                     f"runs launched, {bl['succeeded_partitions']}/{bl['partitions']} partitions delivered "
                     f"(in process: {len(bi['failures'])} failed)",
                     "0 failed runs", met(not bl["failures"] and bl["succeeded_partitions"] == bl["partitions"])))
    if big:
        rows.append(("3. iSpot end to end (extract, spec check, files, file checks, publish) vs bare DuckDB COPY "
                     "of the same lines (built in SQL, size-split, no checks): in the files' order (the same bytes, "
                     "judged) and in any order",
                     f"{big['rows']:,} rows, {big['bytes'] / 1e9:.2f} GB",
                     f"in process {fmt(big['inproc'])}; launched warm {fmt(big['warm'])}; COPY in order "
                     f"{fmt(big['copy_sorted'])}; COPY in any order {fmt(big['copy'])}",
                     f"in process/COPY in order {ratio(big['inproc_over_copy_sorted'])}; launched warm/COPY in order "
                     f"{ratio(big['warm_over_copy_sorted'])}; in process/COPY in any order "
                     f"{ratio(big['inproc_over_copy'])}", "≤ 2×", met(big["inproc_over_copy_sorted"]["median"] <= 2)))
        rows.append(("4. naive path: `.df()` + pandera (pandas) + `to_csv(QUOTE_ALL)`, same day, same order",
                     f"{big['naive_rows']:,} rows", f"naive {fmt(big['naive'])}, peak {fmt(big['naive_peak_mb'], ' MB', 0)}",
                     f"naive/ours in process {ratio(big['naive_over_inproc'], 1)}; naive/ours launched "
                     f"{ratio(big['naive_over_launched'], 1)}", "≥ 5×", met(big["naive_over_inproc"]["median"] >= 5)))
    flat = r.get("flatness") or []
    if flat:
        peaks = [f["peak_mb"] for f in flat]
        spread_ = (max(peaks) - min(peaks)) / min(peaks)
        rows.append(("5. memory: peak RSS of the in-process iSpot run (max over its runs)",
                     ", ".join(f"{f['rows'] / 1e6:.3g} M" for f in flat) + " rows",
                     ", ".join(f"{p:,.0f} MB" for p in peaks) + " (times " + ", ".join(
                         f"{f['seconds']:.1f} s" for f in flat) + ")",
                     f"largest/smallest peak {max(peaks) / min(peaks):.2f}× ({spread_:.0%} apart); "
                     + (f"launched 10 M run: {fmt(big['launched_peak_mb'], ' MB', 0)}" if big else ""),
                     "each < 1 GB, within 25%", met(max(peaks) < 1024 and spread_ <= 0.25)))
    if big:
        rows.append(("6. peer: dlt filesystem destination, CSV from DuckDB Arrow batches (quote_all, no checks, "
                     "no split, no delivery)", f"{big['dlt_rows']:,} rows, {big['dlt_bytes'] / 1e9:.2f} GB",
                     f"dlt {fmt(big['dlt'])}, peak {fmt(big['dlt_peak_mb'], ' MB', 0)}",
                     f"dlt/ours in process {ratio(big['dlt_over_inproc'])}; dlt/ours launched "
                     f"{ratio(big['dlt_over_launched'])}", "> 1× (we are ahead)",
                     met(big["dlt_over_inproc"]["median"] > 1)))
        rows.append(("6. peer: sling", "—", "—", r.get("sling", SLING), "> 1×", "not measured"))
    g = r.get("gzip")
    if g:
        from delivery_platform.formats.compress import default_backend

        libs = [b for b in g if isinstance(g[b], dict) and "over_pigz" in g[b]]
        valid = [b for b in libs if g[b]["valid"]]
        best = min(valid, key=lambda b: g[b]["median"]) if valid else "none"
        product = default_backend()
        ours = g.get(product) if product in valid else None
        rows.append((f"7. gzip -{g['level']} of one part: our parallel multi-member gzip with "
                     + ", ".join(libs) + f" vs pigz; the product uses {product} (as small as zlib, faster; "
                     "isal is faster but ~40% larger and vendors split by compressed bytes: bench/gzip_choice.py)",
                     f"{g['bytes_in'] / 1e6:.0f} MB",
                     "; ".join(f"{b} {fmt(g[b], ' s', 2)} → {g[b]['bytes'] / 1e6:.1f} MB"
                               + ("" if g[b]["valid"] else " INVALID") for b in libs)
                     + f"; pigz {fmt(g['pigz'], ' s', 2)}",
                     "; ".join(f"{b} {ratio(g[b]['over_pigz'])} pigz" for b in libs),
                     "≤ 1.3× pigz", met(ours["over_pigz"]["median"] <= 1.3 if ours else None)
                     + f" ({product}; fastest valid: {best})"))
    if "definitions_load_seconds" in r:
        rows.append(("definitions load (median of 5 processes; 2 in --quick)", "—",
                     f"{r['definitions_load_seconds']:.2f} s", "—", "< 2 s", met(r["definitions_load_seconds"] < 2)))
    if "sensor" in r:
        rows += [
            (f"Idomoo sensor tick over {r['sensor']['files']:,} old PURL files (+ flags)", "—",
             f"{r['sensor']['seconds']:.3f} s, {r['sensor']['peak_mb']:,.0f} MB",
             f"first tick {r['sensor']['first_tick_seconds']:.2f} s for {r['sensor']['first_tick_requests']:,} runs",
             "< 1 s", met(r["sensor"]["seconds"] < 1)),
            (f"ingest a {r['purl']['rows']:,}-row PURL file", f"{r['purl']['rows']:,} rows",
             f"{r['purl']['seconds']:.1f} s, {r['purl']['peak_mb']:,.0f} MB",
             f"{r['purl']['rows'] / r['purl']['seconds']:,.0f} rows/s", "—", "—"),
        ]
    for lot in r.get("lotame", []):
        first, second = lot["days"]
        rows.append((f"Lotame daily job at {lot['users'] / 1e6:g} M users, {lot['mode']} mode "
                     "(`dagster job execute`, DuckDB 512 MB)",
                     f"{second['rows']:,} records, {second['bytes'] / 1e9:.2f} GB gzipped",
                     f"{first['seconds']:.1f} s + {second['seconds']:.1f} s; peaks {first['run_peak_mb']:,.0f} MB, "
                     f"{second['run_peak_mb']:,.0f} MB",
                     f"first day {first['mode']}, second {second['mode']}; "
                     f"{'both delivered' if first['success'] and second['success'] else 'FAILED'}",
                     "delivered, peak < 1 GB",
                     met(first["success"] and second["success"] and max(first["run_peak_mb"],
                                                                         second["run_peak_mb"]) < 1024)))
    n = r.get("repeat", 1)
    lines = [f"Measured {r['taken_at']} on {r['machine']}; partition {r['partition']}; load average before "
             f"{r['load_before'][0]:.1f}, after {r.get('load_after', [0])[0]:.1f}.", "",
             f"Command: `{r['command'].strip()}` (`make bench`). Raw figures: `bench/results/*.json`. "
             f"Times are medians of {n} interleaved rounds with (min–max); each ratio is taken within a round "
             "(every compared command ran once per round, one after the other).", "",
             "| what | size | time | ratio | target | met? |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
