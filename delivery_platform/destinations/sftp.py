"""SFTP with paramiko (dagster-ssh's `SSHResource` cannot list, rename or pin host keys; see
shared/DAGSTER-NOTES.md).

Atomic and no-overwrite: upload to `.<name>.part-<random>` in the same folder, then SFTP
`rename`, which the protocol (v3) and OpenSSH refuse when the target exists. Strict host-key
checking when a key is pinned (`SFTP_HOST_KEY`, "<type> <base64>") or a known_hosts file is
given: a changed key stops the delivery. Without either, the key is accepted and logged, the
way `ssh -o StrictHostKeyChecking=accept-new` would.
"""

from __future__ import annotations

import base64
import logging
import posixpath
import socket
import stat as statmod
import time
import uuid
from pathlib import Path
from typing import BinaryIO

import paramiko

from .base import AlreadyExists, Destination, DestinationError, FileInfo
from .resource import env_name

log = logging.getLogger(__name__)


class SFTPDestination(Destination):
    kind = "sftp"

    def __init__(self, vendor: str, *, host: str, port: int = 22, username: str, password: str | None = None,
                 private_key_file: str | None = None, host_key: str | None = None,
                 known_hosts_file: str | None = None, root: str = "", timeout: float = 60.0, retries: int = 5):
        super().__init__(vendor)
        self.host, self.port, self.username, self.root = host, port, username, root.strip("/")
        self.timeout, self.retries = timeout, retries
        self._auth = {"password": password, "key_filename": private_key_file}
        self._pinned = None
        if host_key:
            try:
                key_type, key_b64 = host_key.split()[:2]
                self._pinned = (key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64)))
            except Exception:
                raise DestinationError(f"[{vendor}] {env_name(vendor, 'SFTP_HOST_KEY')} is not '<type> <base64 key>'") \
                    from None
        self._known_hosts_file = known_hosts_file
        self._connect()

    def _connect(self) -> None:
        vendor, host, port = self.vendor, self.host, self.port
        self.ssh = paramiko.SSHClient()
        if self._pinned:
            self.ssh.get_host_keys().add(host if port == 22 else f"[{host}]:{port}", *self._pinned)
            self.ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        elif self._known_hosts_file:
            self.ssh.load_host_keys(self._known_hosts_file)
            self.ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            self.ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            self.ssh.connect(host, port=port, username=self.username, timeout=self.timeout,
                             banner_timeout=self.timeout, auth_timeout=self.timeout, look_for_keys=False,
                             allow_agent=False, **self._auth)
        except paramiko.BadHostKeyException:
            raise DestinationError(
                f"[{vendor}] the SFTP host key of {host}:{port} does not match the pinned key "
                f"({env_name(vendor, 'SFTP_HOST_KEY')} / {env_name(vendor, 'SFTP_KNOWN_HOSTS_FILE')}): "
                "refusing to connect; if the vendor changed its key, pin the new one") from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc) or "Server" in str(exc) and "not found" in str(exc):
                raise DestinationError(f"[{vendor}] the SFTP host {host}:{port} is not in the pinned keys "
                                       f"({env_name(vendor, 'SFTP_KNOWN_HOSTS_FILE')})") from None
            if isinstance(exc, paramiko.AuthenticationException):
                raise DestinationError(f"[{vendor}] SFTP login to {host}:{port} as {self.username!r} was refused; "
                                       f"check {env_name(vendor, 'SFTP_USERNAME')} and "
                                       f"{env_name(vendor, 'SFTP_PASSWORD')} or "
                                       f"{env_name(vendor, 'SFTP_PRIVATE_KEY_FILE')}") from None
            raise DestinationError(f"[{vendor}] SFTP connection to {host}:{port} failed: {type(exc).__name__}") from None
        except (OSError, socket.timeout) as exc:
            raise DestinationError(f"[{vendor}] cannot reach SFTP host {host}:{port} ({type(exc).__name__}: "
                                   f"{getattr(exc, 'strerror', None) or exc}); check {env_name(vendor, 'SFTP_HOST')} "
                                   f"and {env_name(vendor, 'SFTP_PORT')}") from None
        self.sftp = self.ssh.open_sftp()
        self.sftp.get_channel().settimeout(self.timeout)  # a stalled server raises instead of hanging

    def _connection_lost(self, exc: BaseException) -> bool:
        """True when the session is unusable (dropped, timed out): worth reconnecting and retrying.
        Errors the server answered (permission denied, no such folder) are not."""
        if isinstance(exc, (socket.timeout, TimeoutError, EOFError, ConnectionError)):
            return True
        transport = self.ssh.get_transport()
        return transport is None or not transport.is_active()

    def close(self) -> None:
        # closing a session the network already dropped must not hide the error that ended it
        for part in (self.sftp, self.ssh):
            try:
                part.close()
            except (OSError, paramiko.SSHException, EOFError):
                pass

    def _path(self, name: str) -> str:
        return posixpath.join("/", self.root, name) if self.root else "/" + name

    def _mkdirs(self, folder: str) -> None:
        parts = [p for p in folder.split("/") if p]
        current = ""
        for part in parts:
            current += "/" + part
            try:
                self.sftp.stat(current)
            except FileNotFoundError:
                try:
                    self.sftp.mkdir(current)
                except OSError:
                    self.sftp.stat(current)  # created meanwhile by someone else

    def _publish(self, local_path: Path, name: str) -> None:
        """Upload under a temporary name and rename; a dropped or stalled connection is retried on a
        new connection (after removing the abandoned temporary file), `retries` times with backoff."""
        for attempt in range(self.retries + 1):
            partial = self._partial_name(name)
            try:
                return self._publish_once(local_path, name, partial)
            except AlreadyExists:
                raise
            except (OSError, paramiko.SSHException, EOFError) as exc:
                lost = self._connection_lost(exc)
                if not lost:
                    self._remove_quietly(partial)
                if not lost or attempt == self.retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise DestinationError(f"[{self.vendor}] uploading {self.uri(name)} failed{tries}: "
                                           f"{type(exc).__name__} {exc}".rstrip()) from None
                log.warning("[%s] SFTP connection lost uploading %s (%s); reconnecting (attempt %d of %d)",
                            self.vendor, self.uri(name), type(exc).__name__, attempt + 2, self.retries + 1)
                time.sleep(min(2 ** attempt * 0.5, 30))
                self.close()
                self._connect()
                self._remove_quietly(partial)  # the abandoned upload, if the server kept it

    def _partial_name(self, name: str) -> str:
        final = self._path(name)
        return posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}.part-{uuid.uuid4().hex[:8]}")

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
        except (OSError, paramiko.SSHException, EOFError):
            pass

    def _exists(self, path: str) -> bool:
        try:
            self.sftp.stat(path)
            return True
        except FileNotFoundError:
            return False

    def list(self, prefix: str = "") -> list[FileInfo]:
        """Files below the root whose relative name starts with `prefix` (partial uploads hidden)."""
        out: list[FileInfo] = []
        base = self._path("")
        start = posixpath.dirname(self._path(prefix)) if prefix and not prefix.endswith("/") else self._path(prefix)
        stack = [start.rstrip("/") or "/"]
        while stack:
            folder = stack.pop()
            try:
                entries = self.sftp.listdir_attr(folder)
            except FileNotFoundError:
                continue
            for entry in entries:
                full = posixpath.join(folder, entry.filename)
                rel = full[len(base):].lstrip("/") if base != "/" else full.lstrip("/")
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
        return f"sftp://{self.username}@{self.host}:{self.port}{self._path(name)}"
