"""One measured step, run in its own process so its peak memory is its own.

`python -m bench.measure <what> <args...>` prints one JSON line: {"seconds": ..., "peak_mb": ..., ...}.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def e2e(vendor: str, partition: str) -> dict:
    """The vendor's daily job for one partition through Dagster, local destination."""
    import dagster as dg

    from delivery_platform.definitions import build_defs

    job = build_defs("local").resolve_job_def(f"{vendor}_daily_delivery")
    started = time.perf_counter()
    result = job.execute_in_process(partition_key=partition, instance=dg.DagsterInstance.ephemeral(),
                                    raise_on_error=False)
    seconds = time.perf_counter() - started
    rows = bytes_ = 0
    for event in result.get_asset_materialization_events():
        meta = event.materialization.metadata
        if event.asset_key.path[-1].endswith("delivery"):
            rows += getattr(meta.get("rows"), "value", 0) or 0
            bytes_ += getattr(meta.get("bytes"), "value", 0) or 0
    return {"seconds": seconds, "success": result.success, "rows": rows, "bytes": bytes_}


ISPOT_LINE = """'"' || client_ip || '","' || strftime(event_ts, '%Y-%m-%d %H:%M:%S') || '","' || trim(site_id) || '","' ||
    lower(trim(platform)) || '","' || lower(trim(event_type)) || '","' || coalesce(replace(custom_data, '"', '""'), '') ||
    '","' || replace(user_agent, '"', '""') || '"'"""


def bare_copy(partition: str, out: str) -> dict:
    """The limit: DuckDB COPY of the same day's bytes (lines built in SQL), size-split, no checks."""
    import duckdb

    start = f"TIMESTAMP '{partition}'"
    con = duckdb.connect(config={"memory_limit": "1GB"})
    con.execute(f"ATTACH '{os.environ['DELIVERY_WAREHOUSE_PATH']}' AS wh (READ_ONLY)")
    started = time.perf_counter()
    con.execute(f"""COPY (SELECT {ISPOT_LINE} AS "ip,datetime,siteid,app,type,customdata,useragent"
                 FROM wh.ispot_conversion_events WHERE event_ts >= {start} AND event_ts < {start} + INTERVAL 1 DAY
                 AND NOT contains(client_ip, ':')) TO '{out}' (FORMAT csv, HEADER true, QUOTE '', ESCAPE '',
                 FILE_SIZE_BYTES '190MB')""")
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file()) if Path(out).is_dir() else Path(out).stat().st_size
    return {"seconds": seconds, "bytes": size}


def naive(partition: str, out: str) -> dict:
    """The common way: .df() into pandas, pandera's pandas backend, to_csv(QUOTE_ALL)."""
    import duckdb

    from delivery_platform.vendors.ispot.spec import conversions_schema

    start = f"TIMESTAMP '{partition}'"
    con = duckdb.connect()
    con.execute(f"ATTACH '{os.environ['DELIVERY_WAREHOUSE_PATH']}' AS wh (READ_ONLY)")
    started = time.perf_counter()
    df = con.sql(f"""SELECT client_ip AS ip, strftime(event_ts, '%Y-%m-%d %H:%M:%S') AS datetime, trim(site_id) AS siteid,
                     lower(trim(platform)) AS app, lower(trim(event_type)) AS type, custom_data AS customdata,
                     user_agent AS useragent FROM wh.ispot_conversion_events
                     WHERE event_ts >= {start} AND event_ts < {start} + INTERVAL 1 DAY AND NOT contains(client_ip, ':')
                     ORDER BY event_ts, event_id""").df()
    conversions_schema(partition, ["TC-1234-1", "TC-1234-2"], onboarding=False).validate(df, lazy=True)
    df.to_csv(out, index=False, quoting=csv.QUOTE_ALL)
    return {"seconds": time.perf_counter() - started, "rows": len(df), "bytes": Path(out).stat().st_size}


def compress(source: str, level: int) -> dict:
    """The platform's parallel gzip of a file (to /dev/null-like temp), for comparison with pigz."""
    from delivery_platform.formats.compress import gzip_file

    target = source + ".gz"
    started = time.perf_counter()
    gzip_file(Path(source), Path(target), level=level)
    seconds = time.perf_counter() - started
    size = Path(target).stat().st_size
    os.unlink(target)
    return {"seconds": seconds, "bytes": size}


def definitions_load() -> dict:
    started = time.perf_counter()
    from delivery_platform.definitions import defs  # noqa: F401

    return {"seconds": time.perf_counter() - started}


def sensor_tick(folder: str, files: int) -> dict:
    """The Idomoo Downloads sensor over `files` old PURL files (each with its flag): a first tick
    that takes them all in, then the steady tick that must ignore them."""
    import dagster as dg

    from delivery_platform.destinations import DestinationResource, LocalDestinationConfig
    from delivery_platform.vendors.idomoo import downloads_sensor
    from delivery_platform.vendors.idomoo.assets import IdomooSettings

    root = Path(folder)
    downloads = root / "Downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    if len(list(downloads.iterdir())) < 2 * files:
        for i in range(files):
            (downloads / f"PURL_acme_welcome_20261101_000000_{i:05d}.csv").write_text("RecipientID\n")
            (downloads / f"PURL_acme_welcome_20261101_000000_{i:05d}.csv.flg").write_text("")
    destination = DestinationResource(vendor="idomoo", store=LocalDestinationConfig(root=str(root)))
    settings = IdomooSettings()
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    first = downloads_sensor(dg.build_sensor_context(instance=instance), destination, settings)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    steady = downloads_sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor), destination, settings)
    return {"seconds": time.perf_counter() - started, "first_tick_seconds": first_s,
            "first_tick_requests": len(first.run_requests), "steady_requests": len(steady.run_requests)}


def purl_ingest(rows: int, folder: str) -> dict:
    """Ingesting a PURL file of `rows` rows through `idomoo/purl_results`."""
    import dagster as dg

    from delivery_platform.destinations import DestinationResource, LocalDestinationConfig
    from delivery_platform.vendors.idomoo import purl_files, purl_results
    from delivery_platform.vendors.idomoo.assets import IdomooSettings

    root = Path(folder)
    (root / "Downloads").mkdir(parents=True, exist_ok=True)
    name = "PURL_acme_welcome_20261120_000000_01.csv"
    with open(root / "Downloads" / name, "w") as handle:
        handle.write("RecipientID,FirstName,LastName,Email,Language,OfferCode,City,Points,thumbnail_1,landingPage\n")
        for i in range(rows):
            handle.write(f"R{i:09d},Zoë,Bakker,r{i}@example.com,nl,WELCOME5,Utrecht,{i},"
                         f"https://t.example/{i}.jpg,https://lp.example/{i}\n")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(purl_files.name, [name])
    started = time.perf_counter()
    result = dg.materialize([purl_results], partition_key=name, instance=instance,
                            resources={"idomoo_destination": DestinationResource(
                                           vendor="idomoo", store=LocalDestinationConfig(root=str(root))),
                                       "idomoo_settings": IdomooSettings()})
    return {"seconds": time.perf_counter() - started, "success": result.success, "rows": rows}





def lotame(partition: str, mode: str) -> dict:
    """The Lotame daily job for one partition as users launch it (`dagster job execute`, the run in
    its own process); its peak memory is that process's. Earlier days of the data folder are what
    Lotame holds, so the second day of a folder is a true delta or a comprehensive file with clearings."""
    import duckdb

    command = [str(Path(sys.executable).with_name("dagster")), "job", "execute", "-m",
               "delivery_platform.definitions", "-a", "defs", "-j", "lotame_daily_delivery",
               "--tags", json.dumps({"dagster/partition": partition})]
    started = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "LOTAME_MODE": mode}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    data = Path(os.environ["DELIVERY_DATA_DIR"])
    outbox = data / "outbox" / "lotame" / partition.replace("-", "")
    staged = data / "staging" / "lotame" / "segmentmembership" / partition
    rows = 0
    if (staged / "rows.parquet").exists():
        rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{staged / 'rows.parquet'}')").fetchall()[0][0]
    plan = json.loads((staged / "plan.json").read_text()) if (staged / "plan.json").exists() else {}
    return {"seconds": seconds, "run_peak_mb": round(peak, 1), "success": done.returncode == 0,
            "rows": rows, "mode": plan.get("mode"),
            "bytes": sum(p.stat().st_size for p in outbox.glob("*.json.gz")),
            "error": "" if done.returncode == 0 else (done.stdout + done.stderr)[-1500:]}


def backfill(jobs: str) -> dict:
    """A worker of the parallel backfill: `vendor:partition,vendor:partition,...` in one process."""
    import dagster as dg

    from delivery_platform.definitions import build_defs

    defs = build_defs("local")
    instance = dg.DagsterInstance.ephemeral()
    failures, started = [], time.perf_counter()
    for item in jobs.split(","):
        vendor, partition = item.split(":")
        result = defs.resolve_job_def(f"{vendor}_daily_delivery").execute_in_process(
            partition_key=partition, instance=instance, raise_on_error=False)
        if not result.success:
            failures.append(item)
    return {"seconds": time.perf_counter() - started, "runs": len(jobs.split(",")), "failures": failures}


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    fn = {"e2e": e2e, "bare_copy": bare_copy, "naive": naive, "compress": lambda s, level: compress(s, int(level)),
          "definitions_load": definitions_load, "sensor_tick": lambda f, n: sensor_tick(f, int(n)),
          "purl_ingest": lambda n, f: purl_ingest(int(n), f), "backfill": backfill, "lotame": lotame}[what]
    out = fn(*args)
    out["peak_mb"] = round(peak_mb(), 1)
    print("BENCH " + json.dumps(out))
