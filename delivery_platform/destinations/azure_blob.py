"""Azure Blob Storage with azure-storage-blob, opened from dagster-azure's resource.

No-overwrite with `overwrite=False` (409 when the blob exists). The SDK uploads large files as
staged blocks committed in one final call; uncommitted blocks are never visible as the blob.
(ADLS Gen2/dfs is not used: Azurite cannot serve it and the Blob API covers Optimove's needs.)

The account URL and credential come from dagster-azure's `AzureBlobStorageResource` (a SAS
token, the account key, `DefaultAzureCredential` or anonymous access). Its `get_client()` opens a
`BlobServiceClient` with the SDK's default retry policy and no timeouts: the default waits 15 s,
then 18 s, then 24 s between retries, too slow to be a bounded step. So `blob_service` takes the
endpoint and the credential from the client the resource opens and opens it again with our
policy: transient faults (5xx, 429, dropped connections, timeouts) are retried `retries` times
from a 1 s backoff, and each request waits at most `timeout` seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings, ExponentialRetry
from dagster_azure.blob import AzureBlobStorageResource

from ..core.files import file_md5
from .base import AlreadyExists, Destination, DestinationError, FileInfo
from .objects import ReadStream, join_key, strip_key


def blob_service(azure: AzureBlobStorageResource, *, timeout: float, retries: int) -> BlobServiceClient:
    """The `BlobServiceClient` that `azure.get_client()` opens (same endpoint, SAS query or
    credential object), with bounded retries and per-request timeouts."""
    with azure.get_client() as opened:  # builds no connection: the first request would
        url, credential = opened.url, opened.credential
    return BlobServiceClient(
        url, credential=credential,
        retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=retries,
                                      random_jitter_range=1),
        connection_timeout=timeout, read_timeout=timeout)


class AzureBlobDestination(Destination):
    kind = "azure"

    def __init__(self, vendor: str, *, container: str, azure: AzureBlobStorageResource, prefix: str = "",
                 timeout: float = 60.0, retries: int = 5):
        super().__init__(vendor)
        # a URL may carry a SAS token in its query: URIs shown to people never do
        self.account_url = azure.account_url.split("?", 1)[0].rstrip("/")
        self.container, self.prefix = container, prefix
        self.service = blob_service(azure, timeout=timeout, retries=retries)
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

    def replace(self, local_path: Path, name: str) -> None:
        """Store `local_path` as `name` whether or not it exists (state files, not deliveries)."""
        md5 = bytearray(bytes.fromhex(file_md5(local_path)))
        try:
            with open(local_path, "rb") as data:
                self.client.upload_blob(self._key(name), data, overwrite=True, max_concurrency=2,
                                        content_settings=ContentSettings(content_md5=md5))
        except (AzureError, OSError) as exc:
            raise self._error("uploading", name, exc) from None

    def delete(self, name: str) -> None:
        try:
            self.client.delete_blob(self._key(name))
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise self._error("deleting", name, exc) from None

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
