"""Two nodes, one ledger (issue 21): two worker processes, each with its own data folder, Dagster
instance and node name, share a real PostgreSQL ledger, delivered state in S3 (DELIVERY_STATE_URL)
and the vendors' destinations, each node reaching the S3 ones through its own HTTP proxy so the test
sees every request a node makes.

Each vendor delivers where its document allows: Lotame, Optimove and digitalAudience to S3, iSpot
through its upload API (the local double), Idomoo to its SFTP account.

1. a backfill of every vendor over the test calendar, split across both nodes;
2. the same partition launched on both nodes at once: one delivers, the other skips or is refused
   while the first holds the claim; nothing is sent twice;
3. a node killed (SIGKILL) mid-delivery: the other node takes its claim over once the lease
   (DELIVERY_LEASE_SECONDS=5) has lapsed, not before, and sends only the missing files (Lotame).
Then: every file the ledger calls delivered is in its bucket, each final name was written once,
and Lotame received its days in partition order, each file computed against the one before.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from delivery_platform.ledger import Ledger
from delivery_platform_tests.fixtures import wait_for
from delivery_platform_tests.fault_proxy import FaultProxy
from delivery_platform_tests.fixtures import END_DATE
from delivery_platform_tests.ispot_api_double import ISpotApiServer

VENDORS = ("lotame", "ispot", "optimove", "digital_audience", "idomoo")
ON_S3 = ("lotame", "optimove", "digital_audience")
DAYS = [(END_DATE - dt.timedelta(days=n)).isoformat() for n in range(4, -1, -1)]  # five days, oldest first
BACKFILL, BOTH_AT_ONCE, KILLED = DAYS[:-2], DAYS[-2], DAYS[-1]
LEASE_S = 5.0
# Lotame and digitalAudience compute each day against what the vendor already holds: their days form
# a chain, run in partition order, alternating nodes; each node finds that state in S3
# (DELIVERY_STATE_URL), not on its own disk. Every other vendor's days run side by side.
CHAINS = ("lotame", "digital_audience")
# Lotame in delta mode: each day's file is computed against the file set delivered before it
RUN_CONFIG = {"lotame": {"resources": {"lotame_settings": {"config": {"mode": "delta"}}}}}


class Node:
    """One worker process: its own data folder, Dagster home and name; S3 reached through `proxy`."""

    def __init__(self, name: str, root: Path, env: dict[str, str], proxy: FaultProxy):
        self.name, self.proxy = name, proxy
        data, home = root / name / "data", root / name / "dagster_home"
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.env = {**env, "DELIVERY_DATA_DIR": str(data), "DAGSTER_HOME": str(home),
                    "DELIVERY_NODE_NAME": f"node-{name}"}
        self.stderr = open(root / f"{name}.log", "w")
        self.process = subprocess.Popen([sys.executable, "-m", "delivery_platform_tests.worker"], env=self.env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                        text=True, bufsize=1)
        self.answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.history: list[dict] = []  # every answer, in order

    def _read(self) -> None:
        for line in self.process.stdout:
            self.answers.put(json.loads(line))
        self.answers.put(None)  # the process ended

    def ready(self, timeout: float = 120) -> None:
        assert self.answers.get(timeout=timeout) == {"ready": f"node-{self.name}"}

    def submit(self, vendor: str, day: str) -> None:
        runs_at = dt.datetime.combine(dt.date.fromisoformat(day) + dt.timedelta(days=1), dt.time(9),
                                      tzinfo=dt.timezone.utc)  # the morning after the day, as scheduled
        self.process.stdin.write(json.dumps({"id": f"{vendor}:{day}", "job": f"{vendor}_daily_delivery",
                                             "partition": day, "now": runs_at.isoformat(),
                                             "run_config": RUN_CONFIG.get(vendor)}) + "\n")
        self.process.stdin.flush()

    def answer(self, timeout: float = 180) -> dict:
        got = self.answers.get(timeout=timeout)
        assert got is not None, f"node {self.name} died; see {self.stderr.name}"
        self.history.append(got)
        return got

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        self.stderr.close()


@pytest.fixture
def ispot_api():
    with ISpotApiServer() as server:
        yield server


def run_lanes(nodes: dict[str, Node], lanes: list[list[tuple[str, str, str]]]) -> dict[str, dict]:
    """Run (vendor, day, node) steps: the steps of one lane one after the other, lanes side by side,
    each node one run at a time. Returns each step's answer by "vendor:day"."""
    lanes = [list(lane) for lane in lanes if lane]
    running: dict[str, list] = {}  # node -> the lane whose head it runs
    results = {}
    while lanes or running:
        for name, node in nodes.items():
            if name in running:
                continue
            lane = next((lane for lane in lanes if lane[0][2] == name and lane not in running.values()), None)
            if lane is not None:
                vendor, day, _ = lane[0]
                node.submit(vendor, day)
                running[name] = lane
        assert running, f"no node can run {lanes}"
        for name in list(running):
            try:
                got = nodes[name].answer(timeout=0.05)
            except queue.Empty:
                continue
            results[got["id"]] = {**got, "node": name}
            lane = running.pop(name)
            lane.pop(0)
            if not lane:
                lanes.remove(lane)
    return results


def backfill_lanes() -> list[list[tuple[str, str, str]]]:
    lanes = []
    for vendor in VENDORS:
        if vendor in CHAINS:  # in partition order, alternating nodes
            lanes.append([(vendor, day, "ab"[i % 2]) for i, day in enumerate(BACKFILL)])
        else:  # independent days: side by side on both nodes
            lanes += [[(vendor, day, "ab"[(i + len(lanes)) % 2])] for i, day in enumerate(BACKFILL)]
    return lanes


def final_puts(proxy: FaultProxy) -> Counter:
    """Final names written through a node's proxy (a 2xx PUT; not multipart parts or temporary names)."""
    return Counter(path.split("?")[0] for method, path, status in proxy.requests
                   if method == "PUT" and 200 <= status < 300 and "uploadId=" not in path)


@pytest.mark.fault("ledger", "two nodes share a PostgreSQL ledger: a split backfill, one partition launched on "
                   "both, a node killed (SIGKILL) mid-delivery",
                   "nothing sent twice, nothing lost; the other node takes the dead node's claim over after "
                   "its lease lapses; Lotame's days arrive in order, each on the one before")
def test_two_nodes_share_the_ledger(data_dir, small_warehouse, s3_server, sftp_server, ispot_api, postgres_server,
                                    tmp_path, monkeypatch):
    url = postgres_server.new_database("two_nodes")
    monkeypatch.setenv("DELIVERY_LEDGER_URL", url)
    ledger = Ledger()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DELIVERY_") or k in (
        "DELIVERY_NOW", "DELIVERY_FIRST_DAY", "DELIVERY_RETRY_DELAY_SECONDS")}
    env.update({"DELIVERY_LEDGER_URL": url, "DELIVERY_LEASE_SECONDS": str(LEASE_S),
                "DELIVERY_WAREHOUSE_PATH": str(small_warehouse), "PYTHONUNBUFFERED": "1"})
    # delivered state and returns in S3, reached directly (the proxies count deliveries only)
    state = s3_server.env("state")
    env.update(state, DELIVERY_STATE_URL=f"s3://{state['DELIVERY_STATE_S3_BUCKET']}/platform")
    buckets = {}
    for vendor in ON_S3:
        vendor_env = s3_server.env(vendor)
        buckets[vendor] = vendor_env[f"DELIVERY_{vendor.upper()}_S3_BUCKET"]
        env.update(vendor_env)
    idomoo = sftp_server.env("idomoo")
    env.update(idomoo, ISPOT_API_BASE_URL=ispot_api.url, ISPOT_CLIENT_ID=ispot_api.state.client_id,
               ISPOT_CLIENT_SECRET=ispot_api.state.client_secret, ISPOT_API_BACKOFF_SECONDS="0",
               ISPOT_MIN_UPLOAD_BYTES="1")
    proxies = {name: FaultProxy(s3_server.endpoint) for name in "ab"}
    nodes = {}
    try:
        for name in "ab":
            endpoints = {f"DELIVERY_{v.upper()}_S3_ENDPOINT_URL": proxies[name].url for v in ON_S3}
            nodes[name] = Node(name, tmp_path, {**env, **endpoints}, proxies[name])
        for node in nodes.values():
            node.ready()

        # 1. the backfill, split across both nodes
        results = run_lanes(nodes, backfill_lanes())
        failed = {k: r["error"] for k, r in results.items() if not r["ok"]}
        assert not failed, failed
        assert {r["node"] for r in results.values()} == {"a", "b"}
        for vendor in VENDORS:  # every deliverable the daily jobs deliver (a storyboard may be configured off)
            states = {d: ledger.partition_states(vendor, d) for d in _deliverables(vendor)}
            assert any(states.values()), vendor
            for deliverable, by_day in states.items():
                assert not by_day or all(by_day.get(day) == "complete" for day in BACKFILL), (vendor, by_day)

        # 2. the same partition on both nodes at once
        at_once = ["lotame", "ispot", "digital_audience", "idomoo"]
        for vendor in at_once:
            for node in nodes.values():
                node.submit(vendor, BOTH_AT_ONCE)
            answers = [node.answer() for node in nodes.values()]
            delivered = [a for a in answers if a["ok"] and "send" in a["actions"].values()]
            assert len(delivered) == 1, answers
            other = next(a for a in answers if a is not delivered[0])
            # the other run found it delivered (skip), was refused while the first held the claim, or
            # had built other bytes for it and was refused them: a delivered partition is never sent again
            assert (other["ok"] and all(a.startswith("skip") for a in other["actions"].values())) or (
                "is being delivered by run" in other["error"] or "was already delivered" in other["error"]), other

        # 3. node a killed mid-delivery: node b takes its claim over after the lease, not before
        victim = "lotame"
        proxies["a"].hang_paths.append(".json.gz.md5")  # the bundle's second file never gets an answer
        nodes["a"].submit(victim, KILLED)
        hung = wait_for(lambda: [d for d in ledger.history(victim, status="publishing")
                                 if d.partition_key == KILLED and d.file_name.endswith(".md5")],
                        timeout=120, what=f"node a publishing the .md5 of {victim} {KILLED}")
        deliverable = hung[0].deliverable
        nodes["a"].process.send_signal(signal.SIGKILL)
        nodes["a"].process.wait(30)
        killed = time.monotonic()
        nodes["b"].submit(victim, KILLED)
        first = nodes["b"].answer()
        if not first["ok"]:  # it reached the claim before the lease lapsed: refused, naming node a
            assert "is being delivered by run" in first["error"] and "node-a:" in first["error"], first
            wait_for(lambda: time.monotonic() - killed > LEASE_S + 0.5, LEASE_S + 5, "the lease")
            nodes["b"].submit(victim, KILLED)
            first = nodes["b"].answer()
        assert first["ok"], first
        assert time.monotonic() - killed > LEASE_S * 2 / 3  # never before the dead node's lease lapsed
        attempts = ledger.attempts(victim, deliverable, KILLED)
        abandoned = [d for d in attempts if d.id == hung[0].id]
        assert abandoned[0].status == "failed" and "its claim expired" in abandoned[0].error
        assert "node-a:" in abandoned[0].error
        assert ledger.partition_state(victim, deliverable, KILLED) == "complete"
        # node b sent only what node a had not: the data file went once, from node a
        statuses = {}
        for d in attempts:
            statuses.setdefault(d.file_name.rsplit("/", 1)[1], []).append(d.status)
        assert statuses == {"segmentmembership.json.gz": ["delivered"], "segmentmembership.json.gz.md5":
                            ["failed", "delivered"], f"{KILLED.replace('-', '')}.done": ["delivered"]}, statuses
    finally:
        for node in nodes.values():
            node.stop()
        for proxy in proxies.values():
            proxy.close()

    # the ledger URL's password never reached a node's output (Dagster's event log goes there)
    for name in "ab":
        assert postgres_server.password not in (tmp_path / f"{name}.log").read_text()

    # nothing lost, nothing sent twice
    client = s3_server.client()
    puts = final_puts(proxies["a"]) + final_puts(proxies["b"])
    twice = {path: n for path, n in puts.items() if n > 1}
    assert not twice, twice
    received = {vendor: {o["Key"] for o in client.list_objects_v2(Bucket=buckets[vendor]).get("Contents", [])}
                for vendor in ON_S3}
    received["ispot"] = set(ispot_api.state.received)
    assert ispot_api.state.upload_requests == len(received["ispot"])  # no upload of a name twice
    folder = Path(sftp_server.root) / idomoo["DELIVERY_IDOMOO_PREFIX"]
    received["idomoo"] = {str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file()}
    for vendor in VENDORS:
        delivered = ledger.history(vendor, status="delivered")
        assert delivered, vendor
        names = Counter((d.partition_key, d.file_name) for d in delivered)
        assert max(names.values()) == 1, names.most_common(3)
        # every file delivered is at the vendor, and nothing else is (no temporary name left over)
        assert received[vendor] == {d.file_name.rsplit("/", 1)[-1] if vendor == "ispot" else d.file_name
                                    for d in delivered}, vendor
    # Lotame: every day once, in partition order, each delta computed against the day delivered before
    lotame = ledger.history("lotame", "segmentmembership", status="delivered")
    order = list(dict.fromkeys(d.partition_key for d in lotame))
    assert order == sorted(order) == DAYS[: len(order)] and len(order) >= len(BACKFILL) + 1
    sent = sorted((a for node in nodes.values() for a in node.history if a["id"].startswith("lotame:")
                   and a["ok"] and a["actions"].get("lotame/segmentmembership_delivery") == "send"),
                  key=lambda a: a["id"])
    assert [a["id"].split(":")[1] for a in sent] == order
    built = [a["facts"]["lotame/segment_memberships"] for a in sent]
    assert [b["mode"] for b in built] == ["comprehensive"] + ["delta"] * (len(order) - 1)
    assert [b["previous_delivery"] for b in built] == ["none", *order[:-1]]


def _deliverables(vendor: str) -> list[str]:
    from delivery_platform.vendors import DEADLINES

    return [d for v, d in DEADLINES if v == vendor]
