"""A backfill launched the way the UI launches it: a Dagster instance configured like
deploy/dagster.yaml (queued run coordinator, per-vendor pools, run retries; SQLite storage
instead of PostgreSQL), `dagster-daemon run` and `dagster-webserver` started on it, and one
partition backfill per vendor job submitted through the webserver's GraphQL API (the mutation the
UI's "Launch backfill" sends). The daemon then queues, dequeues and launches every run in its own
process with the default run launcher. Returns the wall time from submission until every run has
ended, and the runs' outcomes as the instance records them.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

LAUNCH = """mutation($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
  }
}"""


def instance_yaml() -> str:
    """deploy/dagster.yaml without its PostgreSQL storage (the bench's instance is SQLite)."""
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    config.pop("storage", None)
    config["telemetry"] = {"enabled": False}
    return yaml.safe_dump(config, sort_keys=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    def reset_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=reset_sigint)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def _graphql(port: int, query: str, variables: dict) -> dict:
    answer = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables},
                           timeout=120)
    answer.raise_for_status()
    body = answer.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def backfill(env: dict, vendors: list[str], days: list[str], *, timeout: float = 3600) -> dict:
    import dagster as dg

    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_yaml())
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    webserver = _start([str(bin_dir / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                       env, home / "webserver.log")
    daemon = _start([str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, home / "daemon.log")
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or webserver.poll() is not None:
                raise RuntimeError("the webserver did not start: " + (home / "webserver.log").read_text()[-2000:])
            time.sleep(0.5)
        started = time.perf_counter()
        backfill_ids = []
        for vendor in vendors:
            answer = _graphql(port, LAUNCH, {"backfillParams": {
                "selector": {"partitionSetName": f"{vendor}_daily_delivery_partition_set",
                             "repositorySelector": {"repositoryName": "__repository__",
                                                    "repositoryLocationName": "delivery_platform"}},
                "partitionNames": days, "title": f"bench {vendor}"}})["launchPartitionBackfill"]
            if answer["__typename"] != "LaunchBackfillSuccess":
                raise RuntimeError(f"backfill of {vendor} refused: {answer}")
            backfill_ids.append(answer["backfillId"])
        expected = len(vendors) * len(days)
        instance = dg.DagsterInstance.from_config(str(home))
        while True:
            runs = [r for b in backfill_ids for r in instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": b}))]
            # a retried run's re-execution carries the backfill tag as well: every run must have ended
            if len({r.tags.get("dagster/partition") + r.job_name for r in runs}) >= expected and all(
                    r.status.value in TERMINAL for r in runs):
                break
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"backfill not done after {timeout:.0f} s: {len(runs)} runs")
            if daemon.poll() is not None:
                raise RuntimeError("the daemon stopped: " + (home / "daemon.log").read_text()[-2000:])
            time.sleep(2)
        seconds = time.perf_counter() - started
        durations = []
        for r in runs:
            stats = instance.get_run_stats(r.run_id)
            if stats.start_time and stats.end_time:
                durations.append(stats.end_time - stats.start_time)
        failed = sorted(f"{r.job_name}:{r.tags.get('dagster/partition')}" for r in runs if r.status.value != "SUCCESS")
        # a partition counts as delivered when one of its runs (the first, or its retry) succeeded
        done = {(r.job_name, r.tags.get("dagster/partition")) for r in runs if r.status.value == "SUCCESS"}
        instance.dispose()
        return {"seconds": seconds, "runs": len(runs), "partitions": expected, "succeeded_partitions": len(done),
                "failures": failed, "run_seconds_median": statistics.median(durations) if durations else None,
                "run_seconds_max": max(durations) if durations else None}
    finally:
        _stop(daemon)
        _stop(webserver)
