"""Where the platform keeps what a later run needs: one store of files by relative key.

Keys are `/`-separated paths; the first part names the area:

| key prefix                      | what                                                        |
|---------------------------------|-------------------------------------------------------------|
| `state/lotame/<day>/<bundle>.*` | each delivered Lotame file set and what it left at Lotame    |
| `state/digital_audience/<day>.parquet` | the contact set delivered to dA that day             |
| `state/idomoo/uploads/<name>.json` | when each Idomoo data file went up (PURL deadline)        |
| `received/<vendor>/<key>`       | every file a vendor sent back, as received (`<key>~<md5>`: an earlier version) |
| `quarantine/<vendor>/<key>`     | received files refused, waiting for a human                 |
| `returns/<table>/<key>.parquet` | the parsed rows of each received file                        |

Embedded default: the folders of the same names under `DELIVERY_DATA_DIR` (`returns/` under
`DELIVERY_RETURNS_DIR`). With `DELIVERY_STATE_URL` set, an object-storage prefix instead:

- `s3://bucket/prefix` (settings `DELIVERY_STATE_S3_ENDPOINT_URL`, `DELIVERY_STATE_S3_REGION`,
  `DELIVERY_STATE_AWS_ACCESS_KEY_ID` + `DELIVERY_STATE_AWS_SECRET_ACCESS_KEY`, else the AWS chain);
- `gs://bucket/prefix` (`DELIVERY_STATE_GCS_PROJECT`; Application Default Credentials);
- `az://container/prefix` (`DELIVERY_STATE_AZURE_ACCOUNT_URL` and `DELIVERY_STATE_AZURE_ACCOUNT_KEY`
  or `DELIVERY_STATE_AZURE_SAS_TOKEN`);
- `DELIVERY_STATE_TIMEOUT` / `DELIVERY_STATE_RETRIES` as for destinations (60 s, 5).

The object backends are the destinations' own clients (destinations/s3.py, gcs.py, azure_blob.py:
retries, timeouts, credentials). Readers get a local path: a file of a run-local cache
(`DELIVERY_DATA_DIR/cache/state/`), downloaded when missing or when the stored object changed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

from . import settings
from .core.files import atomic_path, file_md5, write_atomic

ENV = "DELIVERY_STATE_URL"
SCHEMES = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "azure": "azure", "file": "local"}


class StateConfigError(ValueError):
    """`DELIVERY_STATE_URL` or one of its settings is missing or malformed (names the variable)."""


def _clean(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"state key {key!r}: keys are relative '/' paths without '.', '..' or '//'")
    return key


class StateStore:
    """put / get / list / exists / delete of files by relative key (see the module's table)."""

    kind = "abstract"

    def put(self, key: str, local_path: Path) -> str:
        """Store a copy of `local_path` under `key` (replacing it, atomically); returns its URI."""
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes | str) -> str:
        tmp = self._scratch(key)
        write_atomic(tmp, data)
        try:
            return self.put(key, tmp)
        finally:
            tmp.unlink(missing_ok=True)

    def get(self, key: str) -> Path:
        """A local path holding the stored bytes (FileNotFoundError if absent). Read it, don't
        write it: for object stores it is a cache file."""
        raise NotImplementedError

    def read_bytes(self, key: str) -> bytes:
        return self.get(key).read_bytes()

    def md5(self, key: str) -> str | None:
        """The stored file's MD5 (None if absent)."""
        raise NotImplementedError

    def list(self, prefix: str) -> list[str]:
        """Keys starting with `prefix`, sorted; temporary files are never listed."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        return self.md5(key) is not None

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def uri(self, key: str) -> str:
        raise NotImplementedError

    def _scratch(self, key: str) -> Path:
        return settings.data_dir() / "cache" / "scratch" / f"{os.getpid()}.{key.replace('/', '~')}"


class LocalStateStore(StateStore):
    """The embedded default: folders under `data/` (the layout the platform always had)."""

    kind = "local"

    def path(self, key: str) -> Path:
        area, _, rest = _clean(key).partition("/")
        if area == "returns":
            return settings.returns_dir() / rest
        return settings.data_dir() / key

    def put(self, key: str, local_path: Path) -> str:
        target = self.path(key)
        if Path(local_path).resolve() != target.resolve():
            with atomic_path(target) as partial:
                shutil.copyfile(local_path, partial)
        return self.uri(key)

    def get(self, key: str) -> Path:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(str(path))
        return path

    def md5(self, key: str) -> str | None:
        path = self.path(key)
        return file_md5(path) if path.is_file() else None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        folder_key, _, _ = prefix.rpartition("/")
        folder = self.path(folder_key) if folder_key else settings.data_dir()
        if not folder.is_dir():
            return []
        out = []
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                key = f"{folder_key}/{path.relative_to(folder).as_posix()}" if folder_key else \
                    path.relative_to(folder).as_posix()
                if key.startswith(prefix):
                    out.append(key)
        return sorted(out)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return str(self.path(key))


class ObjectStateStore(StateStore):
    """A prefix of an S3 bucket, GCS bucket or Azure container, through a destination's client."""

    def __init__(self, destination, cache: Path | None = None):
        self.destination = destination
        self.kind = destination.kind
        self._cache = cache

    @property
    def cache(self) -> Path:
        return self._cache or settings.data_dir() / "cache" / "state"

    def _cached(self, key: str) -> tuple[Path, Path]:
        path = self.cache / _clean(key)
        return path, path.with_name(f".{path.name}.stored.json")

    def _remember(self, key: str, source: Path, info) -> None:
        path, meta = self._cached(key)
        if Path(source).resolve() != path.resolve():
            with atomic_path(path) as partial:
                shutil.copyfile(source, partial)
        write_atomic(meta, json.dumps({"size": info.size, "md5": info.md5, "mtime": info.mtime}))

    def put(self, key: str, local_path: Path) -> str:
        self.destination.replace(Path(local_path), _clean(key))
        self._remember(key, Path(local_path), self.destination.stat(key))
        return self.uri(key)

    def get(self, key: str) -> Path:
        info = self.destination.stat(_clean(key))  # FileNotFoundError when absent
        path, meta = self._cached(key)
        if path.is_file() and meta.is_file():
            seen = json.loads(meta.read_text())
            if seen == {"size": info.size, "md5": info.md5, "mtime": info.mtime}:
                return path
        with atomic_path(path) as partial:
            self.destination.download(key, partial)
        write_atomic(meta, json.dumps({"size": info.size, "md5": info.md5, "mtime": info.mtime}))
        return path

    def md5(self, key: str) -> str | None:
        try:
            info = self.destination.stat(_clean(key))
        except FileNotFoundError:
            return None
        return info.md5 or file_md5(self.get(key))

    def exists(self, key: str) -> bool:
        return self.destination.exists(_clean(key))

    def list(self, prefix: str) -> list[str]:
        return sorted(f.name for f in self.destination.list(prefix))

    def delete(self, key: str) -> None:
        self.destination.delete(_clean(key))
        for path in self._cached(key):
            path.unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return self.destination.uri(key)


def _setting(environ: dict, name: str) -> str | None:
    return environ.get(f"DELIVERY_STATE_{name}") or None


_opened: dict[tuple, StateStore] = {}


def state_store(environ: dict | None = None) -> StateStore:
    """The store `DELIVERY_STATE_URL` names (read at each call, never at import); local when unset.
    An object store's client is opened once per process and configuration."""
    environ = os.environ if environ is None else environ
    url = (environ.get(ENV) or "").strip()
    if not url:
        return LocalStateStore()
    config = tuple(sorted((k, v) for k, v in environ.items() if k.startswith("DELIVERY_STATE_")))
    if config not in _opened:
        _opened.clear()  # one configuration at a time (tests switch it)
        _opened[config] = _open(url, environ)
    return _opened[config]


def _open(url: str, environ: dict) -> StateStore:
    parsed = urlparse(url)
    kind = SCHEMES.get(parsed.scheme)
    place, prefix = parsed.netloc, parsed.path.strip("/")
    if kind is None or (kind != "local" and not place):
        raise StateConfigError(f"{ENV}={url!r}: expected s3://bucket/prefix, gs://bucket/prefix or "
                               "az://container/prefix")
    if kind == "local":
        raise StateConfigError(f"{ENV}={url!r}: local state lives under DELIVERY_DATA_DIR; unset {ENV}")
    timeout = float(_setting(environ, "TIMEOUT") or 60)
    retries = int(_setting(environ, "RETRIES") or 5)
    if kind == "s3":
        from dagster_aws.s3 import S3Resource

        from .destinations.s3 import S3Destination

        key_id, secret = _setting(environ, "AWS_ACCESS_KEY_ID"), _setting(environ, "AWS_SECRET_ACCESS_KEY")
        if bool(key_id) != bool(secret):
            raise StateConfigError("set both DELIVERY_STATE_AWS_ACCESS_KEY_ID and "
                                   "DELIVERY_STATE_AWS_SECRET_ACCESS_KEY, or neither (the default AWS chain)")
        s3 = S3Resource(endpoint_url=_setting(environ, "S3_ENDPOINT_URL"),
                        region_name=_setting(environ, "S3_REGION") or "us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret, max_attempts=retries + 1)
        return ObjectStateStore(S3Destination("state", bucket=place, s3=s3, prefix=prefix, timeout=timeout))
    if kind == "gcs":
        from .destinations.gcs import GCSDestination

        return ObjectStateStore(GCSDestination("state", bucket=place, prefix=prefix,
                                               project=_setting(environ, "GCS_PROJECT"), timeout=timeout,
                                               retries=retries))
    from dagster_azure.blob import (AzureBlobStorageKeyCredential, AzureBlobStorageResource,
                                    AzureBlobStorageSASTokenCredential)

    from .destinations.azure_blob import AzureBlobDestination

    account_url = _setting(environ, "AZURE_ACCOUNT_URL")
    sas, key = _setting(environ, "AZURE_SAS_TOKEN"), _setting(environ, "AZURE_ACCOUNT_KEY")
    if not account_url or not (sas or key):
        raise StateConfigError(f"{ENV}={url!r} needs DELIVERY_STATE_AZURE_ACCOUNT_URL and "
                               "DELIVERY_STATE_AZURE_ACCOUNT_KEY or DELIVERY_STATE_AZURE_SAS_TOKEN")
    credential = AzureBlobStorageSASTokenCredential(token=sas) if sas else AzureBlobStorageKeyCredential(key=key)
    azure = AzureBlobStorageResource(account_url=account_url, credential=credential)
    return ObjectStateStore(AzureBlobDestination("state", container=place, azure=azure, prefix=prefix,
                                                 timeout=timeout, retries=retries))


def durable(environ: dict | None = None) -> StateStore | None:
    """The object store when `DELIVERY_STATE_URL` names one, else None: for files the embedded
    default keeps elsewhere (receipts and drift profiles beside the ledger) that must also outlive a
    worker when state is in object storage."""
    store = state_store(environ)
    return None if store.kind == "local" else store


def describe(environ: dict | None = None) -> str:
    """Where state lives, for logs and docs (never a credential)."""
    environ = os.environ if environ is None else environ
    url = (environ.get(ENV) or "").strip()
    return url.split("?", 1)[0] if url else f"local folders under {settings.data_dir()}"
