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


# one concat() per line, as the product renders lines (formats/lines.py): a chain of || is about
# 0.7 s slower on the 10 M-row day, and the limit should be the fastest same-bytes COPY
ISPOT_LINE = """concat('"', client_ip, '","', strftime(event_ts, '%Y-%m-%d %H:%M:%S'), '","', trim(site_id), '","',
    lower(trim(platform)), '","', lower(trim(event_type)), '","', coalesce(replace(custom_data, '"', '""'), ''),
    '","', replace(user_agent, '"', '""'), '"')"""


def bare_copy(partition: str, out: str, ordered: str = "") -> dict:
    """The limit: DuckDB COPY of the same day's lines (built in SQL), size-split, no checks. `ordered`:
    in the files' order (loaded_at, event_id), so the same bytes as ours; otherwise in any order."""
    import duckdb

    start = f"TIMESTAMP '{partition}'"
    con = duckdb.connect(config={"memory_limit": "1GB"})
    con.execute(f"ATTACH '{os.environ['DELIVERY_WAREHOUSE_PATH']}' AS wh (READ_ONLY)")
    started = time.perf_counter()
    con.execute(f"""COPY (SELECT {ISPOT_LINE} AS "ip,datetime,siteid,app,type,customdata,useragent"
                 FROM wh.ispot_conversion_events WHERE event_ts >= {start} AND event_ts < {start} + INTERVAL 1 DAY
                 AND NOT contains(client_ip, ':') AND loaded_at <= {loaded_by()}
                 {"ORDER BY loaded_at, event_id" if ordered else ""}) TO '{out}' (FORMAT csv, HEADER true, QUOTE '', ESCAPE '',
                 FILE_SIZE_BYTES '190MB')""")
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file()) if Path(out).is_dir() else Path(out).stat().st_size
    return {"seconds": seconds, "bytes": size}


NAIVE_SELECT = """SELECT client_ip AS ip, strftime(event_ts, '%Y-%m-%d %H:%M:%S') AS datetime, trim(site_id) AS siteid,
    lower(trim(platform)) AS app, lower(trim(event_type)) AS type, custom_data AS customdata, user_agent AS useragent
    FROM wh.ispot_conversion_events
    WHERE event_ts >= {start} AND event_ts < {start} + INTERVAL 1 DAY AND NOT contains(client_ip, ':')
    AND loaded_at <= {loaded_by}
    ORDER BY loaded_at, event_id"""


def loaded_by() -> str:
    """The pipeline sends what was loaded by its clock time (vendors/ispot/topups.py): so do the peers."""
    import datetime as dt

    return f"TIMESTAMP '{dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(sep=' ')}'"


def delivered(instance, vendor: str, run_id: str) -> tuple[int, int]:
    """Rows and bytes the run's delivery asset recorded (iSpot's `conversions_delivery`)."""
    import dagster as dg

    rows = bytes_ = 0
    for record in instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey([vendor, "conversions_delivery"])), limit=5).records:
        if record.run_id == run_id:
            meta = record.asset_materialization.metadata
            rows += getattr(meta.get("rows"), "value", 0) or 0
            bytes_ += getattr(meta.get("bytes"), "value", 0) or 0
    return rows, bytes_


def launched(vendor: str, partition: str) -> dict:
    """The vendor's daily job as users launch it: `dagster job execute` (a process of its own that
    loads the code location and runs the job with its executor), against the persistent instance of
    DAGSTER_HOME. `seconds` is the command's wall time; `run_seconds` what the instance records
    from the run's start to its end (what the UI shows as the run's duration)."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:  # the instance's storage exists, as the daemon's always does
        instance.get_runs(limit=1)
    command = [str(Path(sys.executable).with_name("dagster")), "job", "execute", "-m",
               "delivery_platform.definitions", "-a", "defs", "-j", f"{vendor}_daily_delivery",
               "--tags", json.dumps({"dagster/partition": partition})]
    started = time.perf_counter()
    done = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out = {"seconds": seconds, "run_peak_mb": round(peak, 1), "success": done.returncode == 0, "rows": 0, "bytes": 0,
           "run_seconds": None, "error": "" if done.returncode == 0 else (done.stdout + done.stderr)[-1500:]}
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(limit=1)
        if runs:
            run = runs[0]
            stats = instance.get_run_stats(run.run_id)
            if stats.start_time and stats.end_time:
                out["run_seconds"] = stats.end_time - stats.start_time
            out["rows"], out["bytes"] = delivered(instance, vendor, run.run_id)
    return out


WARM_LAUNCHER = """
run_launcher:
  module: delivery_platform.runs.launcher
  class: WarmRunLauncher
  config:
    preload_modules: [delivery_platform.definitions]
"""


def launched_warm(vendor: str, partition: str) -> dict:
    """The vendor's daily job as the daemon launches it with the warm run launcher
    (delivery_platform/runs/launcher.py): an instance on DAGSTER_HOME whose dagster.yaml names the
    launcher (added when missing), warmed once (the daemon pays that once, not per run), then the
    run created with its code origin (as the UI or a sensor submits it: `create_seconds`) and launched
    with `instance.launch_run` (what the queued run coordinator's daemon calls for a dequeued run),
    and waited for. `seconds`: from the launch to the run's end as the instance records it;
    `run_seconds`: the run's start to its end; `warm_seconds`: starting the warm process (once)."""
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    config = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    text = config.read_text() if config.exists() else "telemetry:\n  enabled: false\n"
    if "run_launcher:" not in text:
        config.write_text(text + WARM_LAUNCHER)
    recon = ReconstructableRepository.for_module("delivery_platform.definitions", "defs", os.getcwd())
    job = recon.get_reconstructable_job(f"{vendor}_daily_delivery")
    job_def = job.get_definition()  # the submitter's side (the webserver, a sensor) has the job loaded
    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)  # storage exists
        started = time.perf_counter()
        instance.run_launcher.warm()
        warm_seconds = time.perf_counter() - started
        started = time.perf_counter()
        run = instance.create_run_for_job(job_def=job_def, job_code_origin=job.get_python_origin(),
                                          tags={"dagster/partition": partition})
        create_seconds = time.perf_counter() - started
        started = time.perf_counter()
        instance.launch_run(run.run_id, workspace=None)
        while not (run := instance.get_run_by_id(run.run_id)).is_finished:
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        stats = instance.get_run_stats(run.run_id)
        out = {"seconds": seconds, "warm_seconds": warm_seconds, "create_seconds": create_seconds, "success": run.status == dg.DagsterRunStatus.SUCCESS,
               "run_seconds": (stats.end_time - stats.start_time) if stats.start_time and stats.end_time else None,
               "rows": 0, "bytes": 0}
        out["rows"], out["bytes"] = delivered(instance, vendor, run.run_id)
    return out


def dlt_export(partition: str, out: str) -> dict:
    """A peer: dlt's filesystem destination writing the day as CSV from DuckDB Arrow batches (the
    route a Dagster user takes with dagster-dlt): no spec checks, no size split, no delivery."""
    import duckdb
    import dlt
    from dlt.destinations import filesystem

    os.environ.update({"DATA_WRITER__DISABLE_COMPRESSION": "true", "NORMALIZE__DATA_WRITER__QUOTING": "quote_all",
                       "DLT_DATA_DIR": str(Path(out) / "dlt-data"), "RUNTIME__LOG_LEVEL": "WARNING"})
    start = f"TIMESTAMP '{partition}'"
    con = duckdb.connect(config={"memory_limit": "1GB"})
    con.execute(f"ATTACH '{os.environ['DELIVERY_WAREHOUSE_PATH']}' AS wh (READ_ONLY)")
    started = time.perf_counter()

    @dlt.resource(name="conversions", write_disposition="append")
    def conversions():
        yield from con.sql(NAIVE_SELECT.format(start=start, loaded_by=loaded_by())).to_arrow_reader(200_000)

    pipeline = dlt.pipeline(pipeline_name="ispot_bench", destination=filesystem(bucket_url=str(Path(out) / "files")),
                            dataset_name="ispot", pipelines_dir=str(Path(out) / "pipelines"))
    pipeline.run(conversions(), loader_file_format="csv")
    seconds = time.perf_counter() - started
    files = [p for p in (Path(out) / "files").rglob("*.csv") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    rows = 0
    for p in files:
        with open(p, "rb") as handle:
            rows += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b"")) - 1
    return {"seconds": seconds, "bytes": size, "rows": rows, "files": len(files)}


def naive(partition: str, out: str) -> dict:
    """The common way: .df() into pandas, pandera's pandas backend, to_csv(QUOTE_ALL)."""
    import duckdb

    from delivery_platform.vendors.ispot.spec import conversions_schema

    start = f"TIMESTAMP '{partition}'"
    con = duckdb.connect()
    con.execute(f"ATTACH '{os.environ['DELIVERY_WAREHOUSE_PATH']}' AS wh (READ_ONLY)")
    started = time.perf_counter()
    df = con.sql(NAIVE_SELECT.format(start=start, loaded_by=loaded_by())).df()
    conversions_schema(partition, ["TC-1234-1", "TC-1234-2"], onboarding=False).validate(df, lazy=True)
    df.to_csv(out, index=False, quoting=csv.QUOTE_ALL)
    return {"seconds": time.perf_counter() - started, "rows": len(df), "bytes": Path(out).stat().st_size}


def compress(source: str, level: int, backend: str = "zlib") -> dict:
    """The platform's parallel gzip of a file with one deflate library, for comparison with pigz;
    the output is decompressed again and compared with the source (`valid`)."""
    import gzip
    import hashlib

    from delivery_platform.formats.compress import gzip_file

    target = f"{source}.{backend}.gz"
    started = time.perf_counter()
    gzip_file(Path(source), Path(target), level=level, backend=backend)
    seconds = time.perf_counter() - started
    size = Path(target).stat().st_size
    digests = []
    for path, opener in ((source, open), (target, gzip.open)):
        md5 = hashlib.md5()
        with opener(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 24), b""):
                md5.update(chunk)
        digests.append(md5.hexdigest())
    os.unlink(target)
    return {"seconds": seconds, "bytes": size, "valid": digests[0] == digests[1]}


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
    fn = {"e2e": e2e, "bare_copy": bare_copy, "naive": naive, "compress": lambda s, level, backend="zlib": compress(s, int(level), backend),
          "launched": launched, "launched_warm": launched_warm, "dlt": dlt_export,
          "definitions_load": definitions_load, "sensor_tick": lambda f, n: sensor_tick(f, int(n)),
          "purl_ingest": lambda n, f: purl_ingest(int(n), f), "backfill": backfill, "lotame": lotame}[what]
    out = fn(*args)
    out["peak_mb"] = round(peak_mb(), 1)
    print("BENCH " + json.dumps(out))
