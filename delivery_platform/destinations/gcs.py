"""Google Cloud Storage through dagster-gcp's `GCSResource`.

No-overwrite with `if_generation_match=0` (the object must not exist). Large files go up as
one resumable upload, which creates the object only when the last chunk is committed.

The client is `GCSResource(project=...).get_client()`: the resource provides the project and the
credentials (Application Default Credentials; `STORAGE_EMULATOR_HOST` selects an emulator). It
sets no timeout or retry, and google-cloud-storage takes both per call, so they are passed on every
call here: each request waits at most `timeout` seconds for the server; transient faults (5xx,
429, dropped connections, timeouts) are retried with exponential backoff for at most
(retries + 1) x timeout seconds in all (google-api-core retries by deadline, not by count).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from dagster_gcp import GCSResource
from google.api_core import exceptions as gexc
from google.cloud.storage.retry import DEFAULT_RETRY

from .base import AlreadyExists, Destination, DestinationError, FileInfo
from .objects import ReadStream, b64_to_hex, join_key, strip_key


class GCSDestination(Destination):
    kind = "gcs"

    def __init__(self, vendor: str, *, bucket: str, prefix: str = "", project: str | None = None,
                 timeout: float = 60.0, retries: int = 5):
        super().__init__(vendor)
        self.timeout = timeout
        self.retry = DEFAULT_RETRY.with_delay(initial=0.5, maximum=10.0, multiplier=2.0).with_timeout(
            (retries + 1) * timeout)
        self.bucket_name, self.prefix = bucket, prefix
        self.client = GCSResource(project=project).get_client()
        self.bucket = self.client.bucket(bucket)

    def _key(self, name: str) -> str:
        return join_key(self.prefix, name)

    def _error(self, action: str, name: str, exc: Exception) -> DestinationError:
        return DestinationError(f"[{self.vendor}] {action} {self.uri(name)} failed: {type(exc).__name__} "
                                f"{getattr(exc, 'code', '')}".rstrip())

    def _publish(self, local_path: Path, name: str) -> None:
        blob = self.bucket.blob(self._key(name), chunk_size=8 << 20)
        try:
            blob.upload_from_filename(str(local_path), if_generation_match=0, checksum="md5",
                                     timeout=self.timeout, retry=self.retry)
        except gexc.PreconditionFailed:
            raise AlreadyExists(f"[{self.vendor}] {self.uri(name)} already exists; refusing to overwrite") from None
        except (gexc.GoogleAPIError, OSError, ValueError) as exc:
            raise self._error("uploading", name, exc) from None

    def replace(self, local_path: Path, name: str) -> None:
        """Store `local_path` as `name` whether or not it exists (state files, not deliveries)."""
        blob = self.bucket.blob(self._key(name), chunk_size=8 << 20)
        try:
            blob.upload_from_filename(str(local_path), checksum="md5", timeout=self.timeout, retry=self.retry)
        except (gexc.GoogleAPIError, OSError, ValueError) as exc:
            raise self._error("uploading", name, exc) from None

    def delete(self, name: str) -> None:
        try:
            self.bucket.blob(self._key(name)).delete(timeout=self.timeout, retry=self.retry)
        except gexc.NotFound:
            pass
        except gexc.GoogleAPIError as exc:
            raise self._error("deleting", name, exc) from None

    def list(self, prefix: str = "") -> list[FileInfo]:
        try:
            blobs = self.client.list_blobs(self.bucket_name, prefix=self._key(prefix), timeout=self.timeout,
                                           retry=self.retry)
            out = [FileInfo(name=strip_key(self.prefix, b.name), size=b.size or 0, md5=b64_to_hex(b.md5_hash),
                            mtime=b.updated.timestamp() if b.updated else None) for b in blobs]
        except gexc.GoogleAPIError as exc:
            raise self._error("listing", prefix, exc) from None
        return sorted(out, key=lambda f: f.name)

    def stat(self, name: str) -> FileInfo:
        try:
            blob = self.bucket.get_blob(self._key(name), timeout=self.timeout, retry=self.retry)
        except gexc.GoogleAPIError as exc:
            raise self._error("reading", name, exc) from None
        if blob is None:
            raise FileNotFoundError(self.uri(name))
        return FileInfo(name=name, size=blob.size or 0, md5=b64_to_hex(blob.md5_hash),
                        mtime=blob.updated.timestamp() if blob.updated else None)

    def open(self, name: str) -> BinaryIO:
        blob = self.bucket.blob(self._key(name))
        try:
            reader = blob.open("rb")
        except gexc.NotFound:
            raise FileNotFoundError(self.uri(name)) from None
        return ReadStream(lambda size=-1: reader.read(size), reader.close)

    def uri(self, name: str) -> str:
        return f"gs://{self.bucket_name}/{self._key(name)}"
