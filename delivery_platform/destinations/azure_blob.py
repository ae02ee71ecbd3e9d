"""Azure Blob Storage with azure-storage-blob.

No-overwrite with `overwrite=False` (409 when the blob exists). The SDK uploads large files as
staged blocks committed in one final call; uncommitted blocks are never visible as the blob.
(ADLS Gen2/dfs is not used: Azurite cannot serve it and the Blob API covers Optimove's needs.)

The client is built here, with the same credential handling as dagster-azure's
`AzureBlobStorageResource`, because that resource cannot set the retry policy or timeouts: the
SDK's default waits 15 s, then 18 s, then 24 s between retries, too slow to be a bounded step.
Here transient faults (5xx, 429, dropped connections, timeouts) are retried `retries` times from
a 1 s backoff, and each request waits at most `timeout` seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings, ExponentialRetry

from .base import AlreadyExists, Destination, DestinationError, FileInfo, file_md5
from .objects import ReadStream, join_key, strip_key


class AzureBlobDestination(Destination):
    kind = "azure"

    def __init__(self, vendor: str, *, account_url: str, container: str, prefix: str = "",
                 sas_token: str | None = None, account_key: str | None = None, timeout: float = 60.0,
                 retries: int = 5):
        super().__init__(vendor)
        self.account_url, self.container, self.prefix = account_url.rstrip("/"), container, prefix
        # a SAS token string is recognised as such by the SDK; any other string is the account key
        self.service = BlobServiceClient(
            self.account_url, credential=sas_token or account_key,
            retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=retries,
                                          random_jitter_range=1),
            connection_timeout=timeout, read_timeout=timeout)
        self.client = self.service.get_container_client(container)

    def close(self) -> None:
        self.service.close()

    def _key(self, name: str) -> str:
        return join_key(self.prefix, name)

    def _error(self, action: str, name: str, exc: Exception) -> DestinationError:
        code = getattr(exc, "error_code", None) or type(exc).__name__
        return DestinationError(f"[{self.vendor}] {action} {self.uri(name)} failed: {code}")

    def _publish(self, local_path: Path, name: str) -> None:
        md5 = bytearray(bytes.fromhex(file_md5(local_path)))
        try:
            with open(local_path, "rb") as data:
                self.client.upload_blob(self._key(name), data, overwrite=False, max_concurrency=2,
                                        content_settings=ContentSettings(content_md5=md5))
        except ResourceExistsError:
            raise AlreadyExists(f"[{self.vendor}] {self.uri(name)} already exists; refusing to overwrite") from None
        except (AzureError, OSError) as exc:
            raise self._error("uploading", name, exc) from None

    def list(self, prefix: str = "") -> list[FileInfo]:
        try:
            out = [FileInfo(name=strip_key(self.prefix, b.name), size=b.size,
                            md5=bytes(b.content_settings.content_md5).hex() if b.content_settings.content_md5 else None,
                            mtime=b.last_modified.timestamp() if b.last_modified else None)
                   for b in self.client.list_blobs(name_starts_with=self._key(prefix))]
        except AzureError as exc:
            raise self._error("listing", prefix, exc) from None
        return sorted(out, key=lambda f: f.name)

    def stat(self, name: str) -> FileInfo:
        try:
            props = self.client.get_blob_client(self._key(name)).get_blob_properties()
        except ResourceNotFoundError:
            raise FileNotFoundError(self.uri(name)) from None
        except AzureError as exc:
            raise self._error("reading", name, exc) from None
        md5 = props.content_settings.content_md5
        return FileInfo(name=name, size=props.size, md5=bytes(md5).hex() if md5 else None,
                        mtime=props.last_modified.timestamp() if props.last_modified else None)

    def open(self, name: str) -> BinaryIO:
        try:
            downloader = self.client.get_blob_client(self._key(name)).download_blob()
        except ResourceNotFoundError:
            raise FileNotFoundError(self.uri(name)) from None
        return ReadStream(lambda size=-1: downloader.read(size if size is not None else -1))

    def uri(self, name: str) -> str:
        return f"{self.account_url}/{self.container}/{self._key(name)}"
