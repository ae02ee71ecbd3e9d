"""Faults on the way to each store: server errors, throttling, dropped connections, a full disk,
two publishers of one name. The receiver never sees a partial or duplicate file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from delivery_platform.destinations import AlreadyExists, destination_from_env
from delivery_platform.delivery import OutgoingFile, deliver_files
from delivery_platform.destinations.base import DestinationError
from delivery_platform.ledger import Ledger
from delivery_platform_tests.fault_proxy import FaultProxy, TcpFaultProxy


# Each object store behind the fault proxy; "throttle" is what that store sends when it throttles.
THROTTLE = {"s3": (503, "SlowDown"), "gcs": (429, "rateLimitExceeded"), "azure": (503, "ServerBusy")}


@pytest.fixture(params=["s3", "gcs", "azure"])
def store_behind_proxy(request, monkeypatch):
    kind = request.param
    server = request.getfixturevalue({"s3": "s3_server", "gcs": "gcs_server", "azure": "azurite_server"}[kind])
    upstream = {"s3": lambda: server.endpoint, "gcs": lambda: server.url,
                "azure": lambda: server.account_url.rsplit("/", 1)[0]}[kind]()
    proxy = FaultProxy(upstream)
    env = server.env("acme", DELIVERY_ACME_TIMEOUT="1", DELIVERY_ACME_RETRIES="3")
    if kind == "s3":
        env["DELIVERY_ACME_S3_ENDPOINT_URL"] = proxy.url
    elif kind == "gcs":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    else:
        env["DELIVERY_ACME_AZURE_ACCOUNT_URL"] = proxy.url + "/" + server.account_url.rsplit("/", 1)[1]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    proxy.kind = kind
    yield proxy
    proxy.close()


def open_destination():
    return destination_from_env("acme").process_config_and_initialize().get()


@pytest.mark.parametrize("fault", ["500", "503", "throttle", "drop"])
def test_transient_errors_are_retried_and_land_once(store_behind_proxy, tmp_path, fault, request):
    proxy = store_behind_proxy
    name = {"throttle": f"throttled ({THROTTLE[proxy.kind][0]} {THROTTLE[proxy.kind][1]})",
            "drop": "connection dropped mid-upload"}.get(fault, f"{fault} on the upload")
    request.node.add_marker(pytest.mark.fault(proxy.kind, name, "retried with backoff by the client; one complete object"))
    src = tmp_path / "f.csv"
    src.write_bytes(b"x" * 10_000)
    with open_destination() as dest:
        before = proxy.seen
        proxy.fail_next({"throttle": THROTTLE[proxy.kind], "drop": "drop"}.get(fault) or int(fault))
        published = dest.publish(src, "day/f.csv")
        assert published.md5 == hashlib.md5(src.read_bytes()).hexdigest()
        assert proxy.seen - before >= 3  # the failed request, its retry, the read-back
        assert not proxy.faults  # the fault was met
        assert [f.name for f in dest.list()] == ["day/f.csv"]


def test_a_server_slower_than_the_timeout_is_retried_and_delivered_once(store_behind_proxy, tmp_path, request):
    """The held-back request still reaches the server. Either the retry lands first (and the late
    original meets the no-overwrite precondition), or the original lands first and the retry meets
    it; then delivery recognises its own bytes instead of failing. Both end with one object."""
    proxy = store_behind_proxy
    request.node.add_marker(pytest.mark.fault(
        proxy.kind, "server slower than the timeout (answer held 2.5 s, timeout 1 s)",
        "timed out, retried; the ledger records one delivery; one object with the right bytes"))
    src = tmp_path / "f.csv"
    src.write_bytes(b"z" * 20_000)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    with open_destination() as dest:
        proxy.fail_next(("slow", 2.5))
        started = time.monotonic()
        outcome = deliver_files(vendor="acme", deliverable="d", partition_key="2026-11-18", destination=dest,
                                files=[OutgoingFile(src, "day/f.csv")], ledger=ledger, run_id="r1")
        elapsed = time.monotonic() - started
        assert not proxy.faults and proxy.seen >= 3, (proxy.faults, proxy.seen)
        assert 1 <= elapsed < 30, elapsed  # waited out one timeout, then retried
        assert [f["name"] for f in outcome.files] == ["day/f.csv"]
        assert [f.name for f in dest.list()] == ["day/f.csv"]
        with dest.open("day/f.csv") as stream:
            assert stream.read() == src.read_bytes()
    assert [(d.file_name, d.status) for d in ledger.attempts("acme", "d", "2026-11-18")] == [("day/f.csv", "delivered")]


def test_persistent_errors_fail_clearly_in_bounded_time_with_nothing_visible(store_behind_proxy, tmp_path, request):
    proxy = store_behind_proxy
    request.node.add_marker(pytest.mark.fault(
        proxy.kind, "503 on every attempt", "bounded retries (RETRIES=3), then a DestinationError naming the "
        "object; ledger says failed; nothing visible"))
    src = tmp_path / "f.csv"
    src.write_bytes(b"x" * 10_000)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    with open_destination() as dest:
        proxy.fail_next(*[503] * 200)
        started = time.monotonic()
        with pytest.raises(DestinationError, match=r"\[acme\] uploading \S+/day/f.csv failed"):
            deliver_files(vendor="acme", deliverable="d", partition_key="2026-11-18", destination=dest,
                          files=[OutgoingFile(src, "day/f.csv")], ledger=ledger, run_id="r1")
        assert time.monotonic() - started < 60
        proxy.faults.clear()
        assert dest.list() == []
    assert [d.status for d in ledger.attempts("acme", "d", "2026-11-18")] == ["failed"]


@pytest.fixture
def sftp_behind_proxy(sftp_server, monkeypatch):
    proxy = TcpFaultProxy(sftp_server.port)
    env = sftp_server.env("acme", DELIVERY_ACME_SFTP_PORT=str(proxy.port), DELIVERY_ACME_TIMEOUT="1",
                          DELIVERY_ACME_RETRIES="2")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    proxy.folder = Path(sftp_server.root) / env["DELIVERY_ACME_PREFIX"]
    yield proxy
    proxy.close()


@pytest.mark.parametrize("fault", ["connection dropped mid-upload", "server stops answering (stall past the timeout)"])
def test_sftp_reconnects_after_a_lost_connection_and_lands_once(sftp_behind_proxy, tmp_path, fault, request):
    request.node.add_marker(pytest.mark.fault(
        "sftp", fault, "reconnected and retried; the abandoned temporary file removed; one complete file"))
    proxy = sftp_behind_proxy
    src = tmp_path / "f.csv"
    src.write_bytes(os.urandom(1 << 20))
    with open_destination() as dest:
        if fault.startswith("connection dropped"):
            proxy.cut_after(300_000)
        else:
            proxy.stall(3)
        published = dest.publish(src, "day/f.csv")
    assert proxy.fired and published.md5 == hashlib.md5(src.read_bytes()).hexdigest()
    assert sorted(p.name for p in (proxy.folder / "day").iterdir()) == ["f.csv"]  # no .part- left behind
    assert (proxy.folder / "day" / "f.csv").read_bytes() == src.read_bytes()


@pytest.mark.fault("sftp", "connection dropped on every attempt",
                   "bounded retries (RETRIES=2), then a clear error; nothing under the final name")
def test_sftp_persistent_drops_fail_clearly(sftp_behind_proxy, tmp_path):
    proxy = sftp_behind_proxy
    src = tmp_path / "f.csv"
    src.write_bytes(os.urandom(1 << 20))
    with open_destination() as dest:
        for _ in range(3):
            proxy.cut_after(300_000)
        with pytest.raises(DestinationError, match=r"\[acme\] uploading sftp://\S+/day/f.csv failed after 3 attempts"):
            dest.publish(src, "day/f.csv")
    assert not (proxy.folder / "day" / "f.csv").exists()


@pytest.mark.fault("local", "disk full mid-write (file size limit)", "a clear error; no file under the final name")
def test_a_full_disk_leaves_nothing_under_the_final_name(tmp_path):
    import tempfile

    # the source on another file system (tmpfs), so the destination must copy (no hard link)
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    src = Path(tempfile.mkdtemp(dir=shm)) / "big.bin"
    src.write_bytes(os.urandom(1 << 20) * 4)
    root = tmp_path / "outbox"
    child = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG like a full disk, not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        from delivery_platform.destinations.local import LocalDestination
        from delivery_platform.destinations.base import DestinationError
        try:
            LocalDestination("acme", {str(root)!r}).publish({str(src)!r}, "day/big.bin")
        except DestinationError as exc:
            print("ERROR", exc)
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert "ERROR [acme] writing" in done.stdout and "File too large" in done.stdout, done.stdout + done.stderr
    assert not (root / "day" / "big.bin").exists()
    assert [p.name for p in (root / "day").iterdir()] == []  # the partial file was removed too


@pytest.mark.parametrize("kind", ["s3_server", "sftp_server", "azurite_server", "gcs_server"])
def test_two_publishers_of_one_name_give_one_file(kind, request, tmp_path, monkeypatch):
    request.node.add_marker(pytest.mark.fault(kind.split("_")[0].replace("azurite", "azure"),
                                              "two publishers of the same name at once",
                                              "exactly one wins; the other gets AlreadyExists; no mixed bytes"))
    for key, value in request.getfixturevalue(kind).env("acme").items():
        monkeypatch.setenv(key, value)
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a" * 300_000)
    b.write_bytes(b"b" * 300_000)
    from concurrent.futures import ThreadPoolExecutor

    def put(src):
        with open_destination() as dest:
            try:
                dest.publish(src, "day/same.csv")
                return "ok"
            except AlreadyExists:
                return "exists"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(put, [a, b]))
    assert outcomes == ["exists", "ok"]
    with open_destination() as dest:
        with dest.open("day/same.csv") as stream:
            data = stream.read()
    assert data in (a.read_bytes(), b.read_bytes())
