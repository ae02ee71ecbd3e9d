"""SFTP with paramiko (dagster-ssh's `SSHResource` cannot list, rename or pin host keys; see
shared/DAGSTER-NOTES.md).

Atomic and no-overwrite: upload to `.<name>.part-<tag>` in the same folder, then SFTP `rename`,
which the protocol (v3) and OpenSSH refuse when the target exists. The tag is the ledger's
attempt id when a delivery publishes, so a later run can remove what a killed one left.

Paths: names are relative to the login folder (the server's starting directory), like `sftp`
itself; a `PREFIX` starting with `/` is absolute from the server's `/`.

Host keys, the way `ssh` treats them:
- pinned (`SFTP_HOST_KEY`, "<type> <base64>") or a `SFTP_KNOWN_HOSTS_FILE`: strict, a changed
  or unknown key stops the delivery;
- neither, in production: refused, and the error shows the key the server offered, to pin;
- neither, locally: accept-new into `data/known_hosts` (`DELIVERY_KNOWN_HOSTS_FILE`), so the
  first key seen is remembered and a changed key afterwards is refused.

Connections that drop or stall are retried `RETRIES` times with backoff, each wait bounded by
`TIMEOUT`; every reconnect is logged to the run's event log when a delivery set `logger`.
"""

from __future__ import annotations

import base64
import logging
import os
import posixpath
import socket
import stat as statmod
import time
import uuid
from pathlib import Path
from typing import BinaryIO

import paramiko

from .. import settings
from .base import AlreadyExists, Destination, DestinationConfigError, DestinationError, FileInfo, env_name

log = logging.getLogger(__name__)

POLICIES = ("strict", "accept-new")
# transient: worth a new connection; anything else (auth, host key, permission) fails at once
TRANSIENT = (OSError, socket.timeout, EOFError, paramiko.SSHException)


class _Offered(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown server, remembering the key it offered (to show the operator)."""

    def __init__(self):
        self.key: paramiko.PKey | None = None

    def missing_host_key(self, client, hostname, key):
        self.key = key
        raise paramiko.SSHException(f"Server {hostname!r} not found in known_hosts")


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Like `ssh -o StrictHostKeyChecking=accept-new`: remember a first-seen key in a file."""

    def __init__(self, path: Path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:  # append: other hosts' lines stay as they are
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        log.warning("SFTP host %s first seen: its %s key is now remembered in %s", hostname, key.get_name(),
                    self.path)


def known_hosts_path() -> Path:
    """Where the local (non-production) accept-new policy remembers host keys."""
    return Path(os.environ.get("DELIVERY_KNOWN_HOSTS_FILE", settings.data_dir() / "known_hosts"))


class SFTPDestination(Destination):
    kind = "sftp"
    leaves_partials = True

    def __init__(self, vendor: str, *, host: str, port: int = 22, username: str, password: str | None = None,
                 private_key_file: str | None = None, host_key: str | None = None,
                 known_hosts_file: str | None = None, root: str = "", timeout: float = 60.0, retries: int = 5,
                 host_key_policy: str = "accept-new", logger: logging.Logger | None = None):
        super().__init__(vendor)
        self.host, self.port, self.username = host, port, username
        self.absolute = root.startswith("/")
        self.root = root.strip("/")
        self.timeout, self.retries = timeout, retries
        self.logger = logger or log
        if host_key_policy not in POLICIES:
            raise DestinationConfigError(f"[{vendor}] unknown host-key policy {host_key_policy!r}")
        self.host_key_policy = host_key_policy
        if private_key_file and not Path(private_key_file).is_file():
            raise DestinationConfigError(f"[{vendor}] {env_name(vendor, 'SFTP_PRIVATE_KEY_FILE')} names "
                                         f"{private_key_file}, which does not exist or is not a file")
        if known_hosts_file and not Path(known_hosts_file).is_file():
            raise DestinationConfigError(f"[{vendor}] {env_name(vendor, 'SFTP_KNOWN_HOSTS_FILE')} names "
                                         f"{known_hosts_file}, which does not exist or is not a file")
        self._auth = {"password": password, "key_filename": private_key_file}
        self._pinned = None
        if host_key:
            try:
                key_type, key_b64 = host_key.split()[:2]
                self._pinned = (key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64)))
            except Exception:
                raise DestinationConfigError(
                    f"[{vendor}] {env_name(vendor, 'SFTP_HOST_KEY')} is not '<type> <base64 key>'") from None
        self._known_hosts_file = known_hosts_file
        self.ssh: paramiko.SSHClient | None = None
        self.sftp: paramiko.SFTPClient | None = None
        self._connect_with_retries()

    # --- connecting ------------------------------------------------------------------------
    def _host_id(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _client(self) -> tuple[paramiko.SSHClient, paramiko.MissingHostKeyPolicy]:
        ssh = paramiko.SSHClient()
        if self._pinned:
            ssh.get_host_keys().add(self._host_id(), *self._pinned)
            policy: paramiko.MissingHostKeyPolicy = paramiko.RejectPolicy()
        elif self._known_hosts_file:
            ssh.load_host_keys(self._known_hosts_file)
            policy = paramiko.RejectPolicy()
        elif self.host_key_policy == "strict":
            policy = _Offered()
        else:
            remembered = known_hosts_path()
            if remembered.is_file():
                ssh.load_host_keys(str(remembered))
            policy = _AcceptNew(remembered)
        ssh.set_missing_host_key_policy(policy)
        return ssh, policy

    def _connect_with_retries(self) -> None:
        """Connect; a server that is down, drops or stalls is tried again `retries` times with backoff."""
        for attempt in range(self.retries + 1):
            try:
                return self._connect()
            except _Transient as exc:
                if attempt == self.retries:
                    tries = f" (tried {attempt + 1} times)" if attempt else ""
                    raise DestinationError(f"{exc}{tries}") from None
                wait = min(2 ** attempt * 0.5, 30)
                self.logger.warning(f"[{self.vendor}] {exc}; connecting again in {wait:g} s "
                                    f"(attempt {attempt + 2} of {self.retries + 1})")
                time.sleep(wait)

    def _connect(self) -> None:
        vendor, host, port = self.vendor, self.host, self.port
        ssh, policy = self._client()
        try:
            ssh.connect(host, port=port, username=self.username, timeout=self.timeout,
                        banner_timeout=self.timeout, auth_timeout=self.timeout, channel_timeout=self.timeout,
                        look_for_keys=False, allow_agent=False, **self._auth)
        except paramiko.BadHostKeyException:
            ssh.close()
            where = (env_name(vendor, "SFTP_HOST_KEY") if self._pinned else
                     env_name(vendor, "SFTP_KNOWN_HOSTS_FILE") if self._known_hosts_file else str(known_hosts_path()))
            raise DestinationError(
                f"[{vendor}] the SFTP host key of {host}:{port} does not match the pinned key ({where}): "
                "refusing to connect; if the vendor changed its key, pin the new one") from None
        except paramiko.AuthenticationException:
            ssh.close()
            raise DestinationError(f"[{vendor}] SFTP login to {host}:{port} as {self.username!r} was refused; "
                                   f"check {env_name(vendor, 'SFTP_USERNAME')} and "
                                   f"{env_name(vendor, 'SFTP_PASSWORD')} or "
                                   f"{env_name(vendor, 'SFTP_PRIVATE_KEY_FILE')}") from None
        except paramiko.SSHException as exc:
            ssh.close()
            offered = getattr(policy, "key", None)
            if isinstance(policy, _Offered) and offered is not None:
                raise DestinationError(
                    f"[{vendor}] no host key is pinned for SFTP host {host}:{port} and production refuses unpinned "
                    f"servers. Set {env_name(vendor, 'SFTP_HOST_KEY')}='{offered.get_name()} "
                    f"{offered.get_base64()}' after checking with the vendor that this is their key, or point "
                    f"{env_name(vendor, 'SFTP_KNOWN_HOSTS_FILE')} at a known_hosts file") from None
            if "not found in known_hosts" in str(exc):
                raise DestinationError(f"[{vendor}] the SFTP host {host}:{port} is not in the pinned keys "
                                       f"({env_name(vendor, 'SFTP_KNOWN_HOSTS_FILE')})") from None
            if "private key" in str(exc).lower() or "not a valid" in str(exc).lower():
                raise DestinationConfigError(f"[{vendor}] {env_name(vendor, 'SFTP_PRIVATE_KEY_FILE')} could not be "
                                             f"read as a private key ({exc})") from None
            raise _Transient(f"[{vendor}] SFTP connection to {host}:{port} failed ({type(exc).__name__}: {exc})") \
                from None
        except (OSError, socket.timeout, EOFError) as exc:
            ssh.close()
            raise _Transient(f"[{vendor}] cannot reach SFTP host {host}:{port} ({type(exc).__name__}: "
                             f"{getattr(exc, 'strerror', None) or exc}); check {env_name(vendor, 'SFTP_HOST')} "
                             f"and {env_name(vendor, 'SFTP_PORT')}") from None
        self.ssh = ssh
        try:
            self.sftp = ssh.open_sftp()
            self.sftp.get_channel().settimeout(self.timeout)  # a stalled server raises instead of hanging
        except TRANSIENT as exc:
            self._drop()
            raise _Transient(f"[{vendor}] opening an SFTP session on {host}:{port} failed "
                             f"({type(exc).__name__}: {exc})") from None

    def _connection_lost(self, exc: BaseException) -> bool:
        """True when the session is unusable (dropped, timed out): worth reconnecting and retrying.
        Errors the server answered (permission denied, no such folder) are not."""
        if isinstance(exc, (socket.timeout, TimeoutError, EOFError, ConnectionError)):
            return True
        transport = self.ssh.get_transport() if self.ssh else None
        return transport is None or not transport.is_active()

    def _drop(self) -> None:
        """Abandon a dead or stalled session without waiting on it: closing the SFTP channel would
        send a message to a server that no longer reads (and wait up to TIMEOUT again)."""
        transport = self.ssh.get_transport() if self.ssh else None
        if transport is not None:
            transport.close()
        self.sftp = None

    def close(self) -> None:
        # closing a session the network already dropped must not hide the error that ended it
        for part in (self.sftp, self.ssh):
            try:
                if part is not None:
                    part.close()
            except (OSError, paramiko.SSHException, EOFError):
                pass

    # --- paths -----------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        """The server path of a name: below the login folder, or below `/` for an absolute PREFIX."""
        path = posixpath.join(self.root, name) if self.root else name
        return "/" + path if self.absolute else path

    def _mkdirs(self, folder: str) -> None:
        parts = [p for p in folder.split("/") if p]
        current = "/" if folder.startswith("/") else ""
        for part in parts:
            current = posixpath.join(current, part) if current else part
            try:
                self.sftp.stat(current)
            except FileNotFoundError:
                try:
                    self.sftp.mkdir(current)
                except OSError:
                    self.sftp.stat(current)  # created meanwhile by someone else

    # --- publishing ------------------------------------------------------------------------
    def _publish(self, local_path: Path, name: str, tag: str | None = None) -> None:
        """Upload under a temporary name and rename; a dropped or stalled connection is retried on a
        new connection (after removing the abandoned temporary file), `retries` times with backoff."""
        partial = self.partial_name(name, tag or uuid.uuid4().hex[:8])
        for attempt in range(self.retries + 1):
            try:
                return self._publish_once(local_path, name, partial)
            except AlreadyExists:
                raise
            except TRANSIENT as exc:
                lost = self._connection_lost(exc)
                if not lost:
                    self._remove_quietly(partial)
                if not lost or attempt == self.retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise DestinationError(f"[{self.vendor}] uploading {self.uri(name)} failed{tries}: "
                                           f"{type(exc).__name__} {exc}".rstrip()) from None
                wait = min(2 ** attempt * 0.5, 30)
                self.logger.warning(f"[{self.vendor}] SFTP connection lost uploading {self.uri(name)} "
                                    f"({type(exc).__name__}); reconnecting in {wait:g} s "
                                    f"(attempt {attempt + 2} of {self.retries + 1})")
                self._drop()
                time.sleep(wait)
                self._connect_with_retries()
                self._remove_quietly(partial)  # the abandoned upload, if the server kept it

    def partial_path(self, name: str, tag: str) -> str | None:
        return self.partial_name(name, tag)

    def partial_name(self, name: str, tag: str) -> str:
        """The hidden temporary name an upload of `name` uses (dot-file: listings skip it)."""
        final = self._path(name)
        return posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.part-{tag}")

    def remove_partial(self, name: str, tag: str) -> bool:
        """Remove what an interrupted upload of `name` with this tag left; True when nothing is left."""
        partial = self.partial_name(name, tag)
        try:
            self.sftp.remove(partial)
        except FileNotFoundError:
            return True
        except TRANSIENT:
            return not self._exists(partial)
        return True

    def _publish_once(self, local_path: Path, name: str, partial: str) -> None:
        final = self._path(name)
        try:
            self._mkdirs(posixpath.dirname(final))
            if self._exists(final):
                raise AlreadyExists(f"[{self.vendor}] {self.uri(name)} already exists; refusing to overwrite")
            self.sftp.put(str(local_path), partial, confirm=True)
            try:
                self.sftp.rename(partial, final)  # SFTP v3 rename refuses an existing target
            except OSError:
                if self._exists(final):
                    raise AlreadyExists(f"[{self.vendor}] {self.uri(name)} already exists; refusing to overwrite") \
                        from None
                raise
        except AlreadyExists:
            self._remove_quietly(partial)
            raise

    def _remove_quietly(self, path: str) -> None:
        try:
            self.sftp.remove(path)
        except (OSError, paramiko.SSHException, EOFError, AttributeError):
            pass

    def _exists(self, path: str) -> bool:
        try:
            self.sftp.stat(path)
            return True
        except FileNotFoundError:
            return False

    # --- reading ---------------------------------------------------------------------------
    def require_folder(self, prefix: str = "") -> None:
        """Raise when the watched folder is missing: a wrong or wrongly-cased folder must not look
        like an empty one forever."""
        folder = self._path(prefix.rstrip("/")) if prefix else (self._path("") or ".")
        try:
            attrs = self.sftp.stat(folder.rstrip("/") or "/")
        except FileNotFoundError:
            raise DestinationError(f"[{self.vendor}] the folder {self.uri(prefix)} does not exist on the SFTP "
                                   f"server (names are case-sensitive; check {env_name(self.vendor, 'PREFIX')} "
                                   "and the folder setting)") from None
        if not statmod.S_ISDIR(attrs.st_mode or 0):
            raise DestinationError(f"[{self.vendor}] {self.uri(prefix)} is not a folder")

    def list(self, prefix: str = "") -> list[FileInfo]:
        """Files below the root whose relative name starts with `prefix` (partial uploads hidden)."""
        out: list[FileInfo] = []
        base = self._path("").rstrip("/")
        start = posixpath.dirname(self._path(prefix)) if prefix and not prefix.endswith("/") else self._path(prefix)
        stack = [start.rstrip("/") or ("/" if self.absolute else ".")]
        while stack:
            folder = stack.pop()
            try:
                entries = self.sftp.listdir_attr(folder)
            except FileNotFoundError:
                continue
            for entry in entries:
                full = posixpath.join(folder, entry.filename) if folder != "." else entry.filename
                rel = full[len(base):].lstrip("/") if base else full.lstrip("/")
                if statmod.S_ISDIR(entry.st_mode or 0):
                    stack.append(full)
                elif statmod.S_ISREG(entry.st_mode or 0) and ".part-" not in entry.filename and rel.startswith(prefix):
                    out.append(FileInfo(name=rel, size=entry.st_size or 0, mtime=entry.st_mtime))
        return sorted(out, key=lambda f: f.name)

    def stat(self, name: str) -> FileInfo:
        try:
            attrs = self.sftp.stat(self._path(name))
        except FileNotFoundError:
            raise FileNotFoundError(self.uri(name)) from None
        return FileInfo(name=name, size=attrs.st_size or 0, mtime=attrs.st_mtime)

    def open(self, name: str) -> BinaryIO:
        try:
            handle = self.sftp.open(self._path(name), "rb")
        except FileNotFoundError:
            raise FileNotFoundError(self.uri(name)) from None
        handle.prefetch()
        return handle

    def rename(self, name: str, new_name: str) -> None:
        """Move a file within the account (e.g. a processed return file into an archive folder)."""
        target = self._path(new_name)
        self._mkdirs(posixpath.dirname(target))
        self.sftp.rename(self._path(name), target)

    def uri(self, name: str) -> str:
        # `/~/` marks a path below the login folder (as in the sftp URI draft)
        path = self._path(name)
        return f"sftp://{self.username}@{self.host}:{self.port}{path if self.absolute else '/~/' + path}"


class _Transient(Exception):
    """A connection attempt that may succeed later (server down, dropped, stalled)."""
