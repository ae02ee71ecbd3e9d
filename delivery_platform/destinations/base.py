"""The one interface every destination implements.

A destination is a place files are published to (or, for vendor return folders, read from):
a local folder, an S3/GCS/Azure Blob prefix, or an SFTP folder. Names are always relative,
`/`-separated paths below the destination's root.

Atomic publish: a receiver polling the destination never sees a partial file under its
final name. Stores with rename (local, SFTP) write a temporary name and rename it; object
stores upload in one request (or one multipart upload) that only becomes visible when
complete, with a no-overwrite precondition.
"""

from __future__ import annotations

import logging
import posixpath
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from ..core.files import CHUNK, file_md5, stream_md5


def env_name(vendor: str, setting: str) -> str:
    """The environment variable of one destination setting: `DELIVERY_<VENDOR>_<SETTING>`. Here, at
    the bottom of the package, because every store's error messages name the variable to fix."""
    return f"DELIVERY_{vendor.upper()}_{setting}"


class DestinationError(Exception):
    """A destination operation failed. Messages name the vendor and the file, never a secret."""


class AlreadyExists(DestinationError):
    """Publishing refused: the final name already exists and overwrite was not asked for."""


class DestinationConfigError(DestinationError):
    """The destination for a vendor is missing configuration (names the environment variable)."""


@dataclass(frozen=True)
class FileInfo:
    """One entry of a listing, or the result of `stat`."""

    name: str  # relative to the destination root
    size: int
    mtime: float | None = None  # seconds since the epoch, when the store reports it
    md5: str | None = None  # lowercase hex, when the store can report it without a download


@dataclass(frozen=True)
class Published:
    """What `publish` returns: where the file went and the read-back that proves it."""

    name: str
    uri: str
    size: int
    md5: str
    note: str | None = None  # recorded in the ledger beside the delivery (e.g. "accepted earlier")


def clean_name(name: str) -> str:
    """Reject names that could escape the destination root (absolute, `..`, empty parts)."""
    if not name or name.startswith("/") or "\\" in name:
        raise DestinationError(f"refusing file name {name!r}: names must be relative '/' paths")
    normal = posixpath.normpath(name)
    if normal.startswith("..") or normal != name or any(p in ("", ".", "..") for p in name.split("/")):
        raise DestinationError(f"refusing file name {name!r}: it must not contain '.', '..' or '//' parts")
    return name


class Publisher(ABC):
    """Somewhere a delivery publishes files to: what `delivery.deliver_files` needs.

    A `Destination` is a Publisher that can also be listed and read back (every store). A
    write-only upload API (iSpot's: a token and an upload endpoint, nothing to list or read) is a
    Publisher only, with `can_read_back = False`: the ledger, not the vendor, then says what was
    sent. Nothing here pretends to list or read what it cannot.
    """

    #: short kind name shown in metadata and receipts: local, s3, gcs, azure, sftp, ispot-api
    kind: str = "abstract"
    #: whether an interrupted upload can leave a temporary file behind (stores with rename);
    #: object stores make an upload visible only when complete, so nothing is left to clean
    leaves_partials: bool = False
    #: whether `verify`/`exists` can read what the vendor holds (False: only the ledger knows)
    can_read_back: bool = False

    def __init__(self, vendor: str):
        self.vendor = vendor
        # where reconnects and retries are reported; a delivery sets the run's logger (event log)
        self.logger: logging.Logger = logging.getLogger(type(self).__module__)

    @abstractmethod
    def publish(self, local_path: Path, name: str, *, verify: bool = True, md5: str | None = None,
                tag: str | None = None) -> Published:
        """Make `local_path` visible to the vendor as `name`; AlreadyExists when the name is taken."""

    @abstractmethod
    def uri(self, name: str) -> str:
        """A URI for humans and metadata (never carries a credential)."""

    def partial_path(self, name: str, tag: str) -> str | None:
        """Where an upload of `name` with `tag` keeps its temporary file (None: no such file)."""
        return None

    def remove_partial(self, name: str, tag: str) -> bool:
        """Remove the temporary file an interrupted upload of `name` (with `tag`) left; True when
        nothing of it is left. Publishers without temporary files have nothing to remove."""
        return True

    def close(self) -> None:  # pragma: no cover - overridden where connections are held
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Destination(Publisher):
    """Publish, list, read and stat files below one root."""

    can_read_back = True

    # --- writing -------------------------------------------------------------------------
    @abstractmethod
    def _publish(self, local_path: Path, name: str) -> None:
        """Make `local_path` visible as `name`, atomically, refusing an existing name
        (raise AlreadyExists)."""

    def publish(self, local_path: Path, name: str, *, verify: bool = True, md5: str | None = None,
                tag: str | None = None) -> Published:
        """Publish atomically and read back size and checksum (`md5` of the local file when the
        caller already knows it, e.g. computed while writing). `tag` names the temporary file of
        stores with rename (the ledger's attempt id), so a later run can remove what a killed
        upload left (`remove_partial`)."""
        name = clean_name(name)
        local_path = Path(local_path)
        size = local_path.stat().st_size
        md5 = md5 or file_md5(local_path)
        if self.leaves_partials and tag is not None:
            self._publish(local_path, name, tag=tag)
        else:
            self._publish(local_path, name)
        if verify:
            self.verify(name, size=size, md5=md5, local_path=local_path)
        return Published(name=name, uri=self.uri(name), size=size, md5=md5)

    def verify(self, name: str, *, size: int, md5: str, local_path: Path | None = None) -> FileInfo:
        """Read back what the store holds under `name`; raise unless size and MD5 match.
        `local_path`: the file just published as `name` (a store may know it holds that very file)."""
        info = self.stat(name)
        remote_md5 = info.md5
        if remote_md5 is None:  # the store does not report a checksum: download and hash
            with self.open(name) as stream:
                _, remote_md5 = stream_md5(stream)
        if info.size != size or remote_md5 != md5:
            raise DestinationError(
                f"[{self.vendor}] read-back of {self.uri(name)} does not match: "
                f"expected {size} bytes md5 {md5}, found {info.size} bytes md5 {remote_md5}"
            )
        return FileInfo(name=name, size=info.size, mtime=info.mtime, md5=remote_md5)

    # --- reading -------------------------------------------------------------------------
    @abstractmethod
    def list(self, prefix: str = "") -> list[FileInfo]:
        """Files (not folders) whose name starts with `prefix`, recursively."""

    def require_folder(self, prefix: str = "") -> None:
        """Raise DestinationError when a watched folder does not exist, so that a wrong folder never
        looks like an empty one. Object stores have no folders: a prefix always 'exists'."""

    @abstractmethod
    def stat(self, name: str) -> FileInfo:
        """Size (and mtime/MD5 where known) of one file; FileNotFoundError if absent."""

    @abstractmethod
    def open(self, name: str) -> BinaryIO:
        """A binary stream of the file's bytes (a context manager)."""

    def exists(self, name: str) -> bool:
        try:
            self.stat(clean_name(name))
            return True
        except FileNotFoundError:
            return False

    def download(self, name: str, target: Path) -> Path:
        """Copy a remote file to a local path (written to a temporary name, then renamed)."""
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with self.open(name) as src, open(partial, "wb") as dst:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                dst.write(chunk)
        partial.replace(target)
        return target

    def iter_names(self, prefix: str = "") -> Iterator[str]:
        for info in self.list(prefix):
            yield info.name
