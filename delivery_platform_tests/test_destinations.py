"""Every destination against a real server on 127.0.0.1: publish, list, read back, refuse to
overwrite, and never show a partial file under its final name."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from delivery_platform.destinations import AlreadyExists, destination_from_env
from delivery_platform.destinations.base import DestinationError

KINDS = ["local", "s3", "gcs", "azure", "sftp"]
SERVERS = {"s3": "s3_server", "gcs": "gcs_server", "azure": "azurite_server", "sftp": "sftp_server"}


@pytest.fixture(params=KINDS)
def store(request, tmp_path, monkeypatch):
    """(kind, env) for a fresh place on each kind of store, with the env already set."""
    kind = request.param
    if kind == "local":
        env = {"DELIVERY_ACME_DESTINATION": "local", "DELIVERY_ACME_LOCAL_ROOT": str(tmp_path / "outbox")}
    else:
        env = request.getfixturevalue(SERVERS[kind]).env("acme")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return kind, env


def open_destination(vendor="acme"):
    # EnvVar secrets resolve when the resource is initialised, as in a run
    return destination_from_env(vendor).process_config_and_initialize().get()


def test_publish_list_read_back_and_refuse_overwrite(store, tmp_path):
    kind, _ = store
    src = tmp_path / "data.csv"
    src.write_bytes(b"ip,datetime\n" + b'"1.2.3.4","2026-11-19 10:00:00"\n' * 1000)
    with open_destination() as dest:
        assert dest.kind == kind
        published = dest.publish(src, "20261119/data.csv")
        assert published.md5 == hashlib.md5(src.read_bytes()).hexdigest() and published.size == src.stat().st_size
        other = tmp_path / "other.csv"
        other.write_bytes(b"something else")
        with pytest.raises(AlreadyExists):
            dest.publish(other, "20261119/data.csv")
        dest.publish(other, "20261119/20261119.done")
        assert [f.name for f in dest.list()] == ["20261119/20261119.done", "20261119/data.csv"]
        assert [f.name for f in dest.list("20261119/data")] == ["20261119/data.csv"]
        with dest.open("20261119/data.csv") as stream:
            assert stream.read() == src.read_bytes()
        info = dest.verify("20261119/data.csv", size=published.size, md5=published.md5)
        assert info.size == src.stat().st_size
        assert dest.exists("20261119/data.csv") and not dest.exists("20261119/missing.csv")
        target = dest.download("20261119/data.csv", tmp_path / "back" / "data.csv")
        assert target.read_bytes() == src.read_bytes()
        with pytest.raises(FileNotFoundError):
            dest.stat("nope.csv")
        assert published.uri.startswith({"local": "file://", "s3": "s3://", "gcs": "gs://", "azure": "http://",
                                         "sftp": "sftp://"}[kind])


def test_names_that_escape_the_root_are_refused(store, tmp_path):
    src = tmp_path / "x"
    src.write_bytes(b"x")
    with open_destination() as dest:
        for name in ("../x", "/etc/passwd", "a/../../x", "a//b"):
            with pytest.raises(DestinationError, match="refusing file name"):
                dest.publish(src, name)


def test_azure_with_a_sas_token_publishes_and_never_shows_the_token(azurite_server, monkeypatch, tmp_path):
    """The SAS credential goes through dagster-azure's resource (`AzureBlobStorageSASTokenCredential`)
    into the client we open with our retry policy: it must sign every request, and no URI shows it."""
    import datetime as dt

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from delivery_platform_tests.servers import AZURITE_ACCOUNT, AZURITE_KEY

    env = azurite_server.env("acme")
    key = env.pop("DELIVERY_ACME_AZURE_ACCOUNT_KEY")
    token = generate_container_sas(
        AZURITE_ACCOUNT, env["DELIVERY_ACME_AZURE_CONTAINER"], account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True, write=True, create=True, list=True),
        expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
    for name, value in {**env, "DELIVERY_ACME_AZURE_SAS_TOKEN": token}.items():
        monkeypatch.setenv(name, value)
    src = tmp_path / "data.csv"
    src.write_bytes(b"a,b\n1,2\n")
    with open_destination() as dest:
        published = dest.publish(src, "20261119/data.csv")
        with pytest.raises(AlreadyExists) as refused:
            dest.publish(src, "20261119/data.csv")
        assert [f.name for f in dest.list()] == ["20261119/data.csv"]
    signature = dict(part.split("=", 1) for part in token.split("&"))["sig"]
    for text in (published.uri, str(refused.value), repr(refused.value)):
        assert signature not in text and key not in text
    container_url = f"{env['DELIVERY_ACME_AZURE_ACCOUNT_URL']}/{env['DELIVERY_ACME_AZURE_CONTAINER']}"
    assert published.uri == f"{container_url}/20261119/data.csv"


CHILD = textwrap.dedent("""
    import sys
    from delivery_platform.destinations import destination_from_env
    dest = destination_from_env("acme").process_config_and_initialize().get()
    print("start", flush=True)
    dest.publish(sys.argv[1], "big/file.bin")
    print("done", flush=True)
""")


@pytest.mark.fault("all stores", "process killed mid-upload", "the final name is absent or complete, never partial")
def test_a_killed_upload_never_leaves_a_partial_file_under_the_final_name(store, tmp_path):
    kind, env = store
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(1 << 20) * 24)  # 24 MiB
    want = hashlib.md5(src.read_bytes()).hexdigest()
    outcomes = set()
    for delay in (0.05, 0.3):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(src)], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, **env})
        assert child.stdout.readline().strip() == "start"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        with open_destination() as dest:
            if dest.exists("big/file.bin"):
                info = dest.stat("big/file.bin")
                with dest.open("big/file.bin") as stream:
                    assert hashlib.md5(stream.read()).hexdigest() == want and info.size == src.stat().st_size
                outcomes.add("complete")
                break
            assert [f.name for f in dest.list()] == []  # no partial under any visible name
            outcomes.add("absent")
    assert outcomes


def test_a_local_hard_link_is_not_hashed_again_and_a_copy_is_read_back(tmp_path, monkeypatch):
    from delivery_platform.destinations import base, local

    monkeypatch.setenv("DELIVERY_ACME_DESTINATION", "local")
    monkeypatch.setenv("DELIVERY_ACME_LOCAL_ROOT", str(tmp_path / "outbox"))
    src = tmp_path / "part.csv"
    src.write_bytes(b"x" * 100_000)
    right = hashlib.md5(src.read_bytes()).hexdigest()

    def no_reading(*_a, **_k):
        raise AssertionError("a hard link was hashed again")

    with open_destination() as dest, monkeypatch.context() as m:
        m.setattr(local, "file_md5", no_reading)
        m.setattr(base, "stream_md5", no_reading)
        published = dest.publish(src, "linked.csv", md5=right)
        assert os.path.samefile(tmp_path / "outbox" / "linked.csv", src) and published.md5 == right

    # another file system: os.link fails, the file is copied, and the copy is read back and hashed
    real_link = os.link
    monkeypatch.setattr(local.os, "link", lambda a, b: (_ for _ in ()).throw(OSError(18, "cross-device"))
                        if a == src else real_link(a, b))
    with open_destination() as dest:
        copied = dest.publish(src, "copied.csv", md5=right)
        assert copied.md5 == right and not os.path.samefile(tmp_path / "outbox" / "copied.csv", src)
        with pytest.raises(DestinationError, match="does not match"):
            dest.publish(src, "copied-wrong.csv", md5="0" * 32)
