"""Faults on the way to each store: server errors, throttling, dropped connections, a full disk,
two publishers of one name. The receiver never sees a partial or duplicate file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from delivery_platform.destinations import AlreadyExists, destination_from_env
from delivery_platform.destinations.base import DestinationError
from delivery_platform_tests.fault_proxy import FaultProxy


@pytest.fixture
def s3_behind_proxy(s3_server, monkeypatch):
    proxy = FaultProxy(s3_server.endpoint)
    env = s3_server.env("acme", DELIVERY_ACME_S3_ENDPOINT_URL=proxy.url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield proxy
    proxy.close()


def open_destination():
    return destination_from_env("acme").process_config_and_initialize().get()


@pytest.mark.parametrize("fault", [503, 500, "drop"])
def test_s3_transient_errors_are_retried_and_land_once(s3_behind_proxy, tmp_path, fault, request):
    request.node.add_marker(pytest.mark.fault("s3", f"{fault} on the upload", "retried by the client; one complete object"))
    src = tmp_path / "f.csv"
    src.write_bytes(b"x" * 10_000)
    with open_destination() as dest:
        s3_behind_proxy.fail_next(fault)
        published = dest.publish(src, "day/f.csv")
        assert published.md5 == hashlib.md5(src.read_bytes()).hexdigest()
        assert [f.name for f in dest.list()] == ["day/f.csv"]


@pytest.mark.fault("s3", "503 on every attempt", "a clear DestinationError naming the object; nothing visible")
def test_s3_persistent_errors_fail_clearly_with_nothing_visible(s3_behind_proxy, tmp_path):
    src = tmp_path / "f.csv"
    src.write_bytes(b"x" * 10_000)
    with open_destination() as dest:
        s3_behind_proxy.fail_next(*[503] * 20)
        with pytest.raises(DestinationError, match=r"\[acme\] uploading s3://.*/day/f.csv failed"):
            dest.publish(src, "day/f.csv")
        s3_behind_proxy.faults.clear()
        assert dest.list() == []


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


@pytest.mark.parametrize("fault", [503, "drop"])
def test_gcs_transient_errors_are_retried_and_land_once(gcs_server, monkeypatch, tmp_path, fault, request):
    request.node.add_marker(pytest.mark.fault("gcs", f"{fault} on the upload", "retried by the client; one complete object"))
    env = gcs_server.env("acme")
    proxy = FaultProxy(gcs_server.url)
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        src = tmp_path / "f.csv"
        src.write_bytes(b"y" * 10_000)
        with open_destination() as dest:
            proxy.fail_next(fault)
            published = dest.publish(src, "day/f.csv")
            assert published.md5 == hashlib.md5(src.read_bytes()).hexdigest()
            assert [f.name for f in dest.list()] == ["day/f.csv"]
        assert proxy.seen >= 2  # the fault was met, then the retry went through
    finally:
        proxy.close()
