"""One configuration class per kind of store, each with only its own fields.

`DestinationResource.store` (resource.py) holds exactly one of them, chosen by its `kind`: a pydantic
discriminated union (`Field(discriminator="kind")`), which Dagster 1.13 turns into a config
*selector* keyed by the kind. The Launchpad and the resource's run config therefore read
`store: {s3: {bucket: ..., prefix: ...}}`, offer only the chosen kind's fields, and refuse a field of
another kind ("Received unexpected config entry ... at path ...:store:s3").

Each class:
- maps its `DELIVERY_<VENDOR>_<SETTING>` variable suffixes to its fields (`ENV`), naming which are
  secrets (`SECRETS`, passed as `dg.EnvVar`s, never shown: `repr=False`);
- checks itself without connecting (`check`), naming the exact variable to set;
- opens its store (`open`) through the Dagster integration's resource where one exists.

Required settings (a bucket, a host) are optional fields checked by `check`, not required pydantic
fields: a vendor whose variables are incomplete must fail its own runs (at once, never retried), not
stop the whole code location from loading.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar, Literal, Optional, Union

import dagster as dg
from pydantic import ConfigDict, Field

from .. import settings
from .base import Destination, DestinationConfigError, env_name


class StoreConfig(dg.Config):
    """What every store's configuration has: its kind and a path prefix below the store's root."""

    # extra="forbid": a field of another kind is an error, not silently ignored; hide_input_in_errors:
    # pydantic's messages would otherwise quote the input, which may hold a secret
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    kind: str
    prefix: str = Field(default="", description="Path below the store's root (`DELIVERY_<VENDOR>_PREFIX`).")

    ENV: ClassVar[dict[str, str]] = {"PREFIX": "prefix"}  # variable suffix -> field
    SECRETS: ClassVar[frozenset[str]] = frozenset()  # fields read from EnvVars only

    def __init__(self, **data):
        unknown = sorted(set(data) - set(type(self).model_fields))
        if unknown:
            kind = type(self).model_fields["kind"].default
            raise DestinationConfigError(
                f"{type(self).__name__} (destination kind {kind!r}) has no field "
                f"{', '.join(repr(u) for u in unknown)}; its fields are "
                f"{', '.join(f for f in type(self).model_fields if f != 'kind')}")
        super().__init__(**data)

    @classmethod
    def variable(cls, vendor: str, field: str) -> str:
        """The environment variable that sets `field` for `vendor`."""
        suffix = next((s for s, f in cls.ENV.items() if f == field), field.upper())
        return env_name(vendor, suffix)

    def check(self, vendor: str) -> None:
        """Raise DestinationConfigError for a missing or contradictory setting (no connection)."""

    def _require(self, vendor: str, *fields: str) -> None:
        missing = [f for f in fields if not getattr(self, f)]
        if missing:
            raise DestinationConfigError(
                f"vendor {vendor!r}: destination kind {self.kind!r} needs "
                f"{', '.join(self.variable(vendor, f) for f in missing)} to be set")

    def _require_file(self, vendor: str, field: str) -> None:
        path = getattr(self, field)
        if path and not Path(path).is_file():
            raise DestinationConfigError(f"vendor {vendor!r}: {self.variable(vendor, field)} names {path}, "
                                         "which does not exist or is not a file")

    def place(self, vendor: str) -> str:
        """Where files go, for humans: never a credential."""
        raise NotImplementedError

    def open(self, vendor: str, logger: Optional[logging.Logger] = None) -> Destination:
        raise NotImplementedError


class RemoteStoreConfig(StoreConfig):
    """Stores reached over the network: each request is bounded in time and transient faults retried."""

    timeout: float = Field(default=60.0, description="Seconds one request may wait for the server.")
    retries: int = Field(default=5, description="Retries of a transient fault (5xx, throttling, drop, "
                                                "timeout), with backoff.")

    ENV: ClassVar[dict[str, str]] = {**StoreConfig.ENV, "TIMEOUT": "timeout", "RETRIES": "retries"}

    def check(self, vendor: str) -> None:
        if self.timeout <= 0 or self.retries < 0:
            raise DestinationConfigError(f"vendor {vendor!r}: {env_name(vendor, 'TIMEOUT')} must be > 0 "
                                         f"and {env_name(vendor, 'RETRIES')} >= 0")


class LocalDestinationConfig(StoreConfig):
    """A folder on this machine; by default `data/outbox/<vendor>/`."""

    kind: Literal["local"] = "local"
    root: Optional[str] = Field(default=None, description="The folder (default `data/outbox/<vendor>`).")

    ENV: ClassVar[dict[str, str]] = {**StoreConfig.ENV, "LOCAL_ROOT": "root"}

    def folder(self, vendor: str) -> Path:
        return Path(self.root) if self.root else settings.outbox_dir() / vendor

    def place(self, vendor: str) -> str:
        return self.root or str(settings.outbox_dir() / vendor)

    def open(self, vendor: str, logger: Optional[logging.Logger] = None) -> Destination:
        from .local import LocalDestination

        root = self.folder(vendor)
        return LocalDestination(vendor, root / self.prefix if self.prefix else root)


class S3DestinationConfig(RemoteStoreConfig):
    """Amazon S3 or any S3 API, opened through dagster-aws's `S3Resource`."""

    kind: Literal["s3"] = "s3"
    bucket: Optional[str] = None
    endpoint_url: Optional[str] = Field(default=None, description="Another S3 API (default: AWS).")
    region: Optional[str] = Field(default=None, description="Default us-east-1.")
    aws_access_key_id: Optional[str] = Field(default=None, repr=False,
                                             description="With the secret key; neither: the default AWS chain.")
    aws_secret_access_key: Optional[str] = Field(default=None, repr=False)

    ENV: ClassVar[dict[str, str]] = {
        **RemoteStoreConfig.ENV, "S3_BUCKET": "bucket", "S3_ENDPOINT_URL": "endpoint_url", "S3_REGION": "region",
        "AWS_ACCESS_KEY_ID": "aws_access_key_id", "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key"}
    SECRETS: ClassVar[frozenset[str]] = frozenset({"aws_access_key_id", "aws_secret_access_key"})

    def check(self, vendor: str) -> None:
        super().check(vendor)
        self._require(vendor, "bucket")
        if bool(self.aws_access_key_id) != bool(self.aws_secret_access_key):
            raise DestinationConfigError(
                f"vendor {vendor!r}: set both {env_name(vendor, 'AWS_ACCESS_KEY_ID')} and "
                f"{env_name(vendor, 'AWS_SECRET_ACCESS_KEY')}, or neither (to use the default AWS chain)")

    def place(self, vendor: str) -> str:
        return f"s3://{self.bucket}"

    def open(self, vendor: str, logger: Optional[logging.Logger] = None) -> Destination:
        # imported when opened: boto3 and dagster-aws add seconds to every load of the definitions
        from dagster_aws.s3 import S3Resource

        from .s3 import S3Destination

        s3 = S3Resource(endpoint_url=self.endpoint_url, region_name=self.region or "us-east-1",
                        aws_access_key_id=self.aws_access_key_id, aws_secret_access_key=self.aws_secret_access_key,
                        max_attempts=self.retries + 1)
        return S3Destination(vendor, bucket=self.bucket, s3=s3, prefix=self.prefix, timeout=self.timeout)


class GCSDestinationConfig(RemoteStoreConfig):
    """Google Cloud Storage through dagster-gcp's `GCSResource` (Application Default Credentials)."""

    kind: Literal["gcs"] = "gcs"
    bucket: Optional[str] = None
    project: Optional[str] = None

    ENV: ClassVar[dict[str, str]] = {**RemoteStoreConfig.ENV, "GCS_BUCKET": "bucket", "GCS_PROJECT": "project"}

    def check(self, vendor: str) -> None:
        super().check(vendor)
        self._require(vendor, "bucket")

    def place(self, vendor: str) -> str:
        return f"gs://{self.bucket}"

    def open(self, vendor: str, logger: Optional[logging.Logger] = None) -> Destination:
        from .gcs import GCSDestination  # imported when opened: google-cloud-storage is slow to import

        return GCSDestination(vendor, bucket=self.bucket, prefix=self.prefix, project=self.project,
                              timeout=self.timeout, retries=self.retries)


class AzureBlobDestinationConfig(RemoteStoreConfig):
    """Azure Blob Storage through dagster-azure's `AzureBlobStorageResource` (SAS token or account key)."""

    kind: Literal["azure"] = "azure"
    account_url: Optional[str] = None
    container: Optional[str] = None
    sas_token: Optional[str] = Field(default=None, repr=False)
    account_key: Optional[str] = Field(default=None, repr=False)

    ENV: ClassVar[dict[str, str]] = {
        **RemoteStoreConfig.ENV, "AZURE_ACCOUNT_URL": "account_url", "AZURE_CONTAINER": "container",
        "AZURE_SAS_TOKEN": "sas_token", "AZURE_ACCOUNT_KEY": "account_key"}
    SECRETS: ClassVar[frozenset[str]] = frozenset({"sas_token", "account_key"})

    def check(self, vendor: str) -> None:
        super().check(vendor)
        self._require(vendor, "account_url", "container")
        if not (self.sas_token or self.account_key):
            raise DestinationConfigError(
                f"vendor {vendor!r}: destination kind 'azure' needs "
                f"{env_name(vendor, 'AZURE_SAS_TOKEN')} or {env_name(vendor, 'AZURE_ACCOUNT_KEY')}")

    def place(self, vendor: str) -> str:
        return f"{self.account_url}/{self.container}"

    def open(self, vendor: str, logger: Optional[logging.Logger] = None) -> Destination:
        # imported when opened: the Azure SDK adds seconds to every load of the definitions
        from dagster_azure.blob import (AzureBlobStorageKeyCredential, AzureBlobStorageResource,
                                        AzureBlobStorageSASTokenCredential)

        from .azure_blob import AzureBlobDestination

        if self.sas_token:
            credential = AzureBlobStorageSASTokenCredential(token=self.sas_token)
        else:
            credential = AzureBlobStorageKeyCredential(key=self.account_key)
        azure = AzureBlobStorageResource(account_url=self.account_url, credential=credential)
        return AzureBlobDestination(vendor, container=self.container, azure=azure, prefix=self.prefix,
                                    timeout=self.timeout, retries=self.retries)


class SFTPDestinationConfig(RemoteStoreConfig):
    """An SFTP account (paramiko: dagster-ssh can neither pin host keys nor rename; docs/destinations.md)."""

    kind: Literal["sftp"] = "sftp"
    host: Optional[str] = None
    port: int = 22
    username: Optional[str] = None
    password: Optional[str] = Field(default=None, repr=False, description="Or private_key_file.")
    private_key_file: Optional[str] = None
    host_key: Optional[str] = Field(default=None, description="The pinned key: '<type> <base64>'.")
    known_hosts_file: Optional[str] = None
    # servers without a pinned key: "strict" (production) refuses them, "accept-new" (local) remembers
    # the first key seen in data/known_hosts and refuses a changed one afterwards
    host_key_policy: Literal["strict", "accept-new"] = "accept-new"

    ENV: ClassVar[dict[str, str]] = {
        **RemoteStoreConfig.ENV, "SFTP_HOST": "host", "SFTP_PORT": "port", "SFTP_USERNAME": "username",
        "SFTP_PASSWORD": "password", "SFTP_PRIVATE_KEY_FILE": "private_key_file", "SFTP_HOST_KEY": "host_key",
        "SFTP_KNOWN_HOSTS_FILE": "known_hosts_file"}
    SECRETS: ClassVar[frozenset[str]] = frozenset({"password"})

    def check(self, vendor: str) -> None:
        super().check(vendor)
        self._require(vendor, "host", "username")
        if not (self.password or self.private_key_file):
            raise DestinationConfigError(
                f"vendor {vendor!r}: destination kind 'sftp' needs "
                f"{env_name(vendor, 'SFTP_PASSWORD')} or {env_name(vendor, 'SFTP_PRIVATE_KEY_FILE')}")
        self._require_file(vendor, "private_key_file")
        self._require_file(vendor, "known_hosts_file")

    def place(self, vendor: str) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}"

    def open(self, vendor: str, logger: Optional[logging.Logger] = None) -> Destination:
        from .sftp import SFTPDestination

        return SFTPDestination(
            vendor, host=self.host, port=self.port, username=self.username, password=self.password,
            private_key_file=self.private_key_file, host_key=self.host_key, known_hosts_file=self.known_hosts_file,
            root=self.prefix, timeout=self.timeout, retries=self.retries, host_key_policy=self.host_key_policy,
            logger=logger)


StoreConfigs = Union[LocalDestinationConfig, S3DestinationConfig, GCSDestinationConfig,
                     AzureBlobDestinationConfig, SFTPDestinationConfig]
BY_KIND: dict[str, type[StoreConfig]] = {
    cls.model_fields["kind"].default: cls
    for cls in (LocalDestinationConfig, S3DestinationConfig, GCSDestinationConfig, AzureBlobDestinationConfig,
                SFTPDestinationConfig)
}
KINDS = tuple(BY_KIND)  # local, s3, gcs, azure, sftp


def validate_kind(kind: str, allowed=None, vendor: Optional[str] = None) -> str:
    """`kind` if it is a known destination kind and, when `allowed` is given (the kinds a vendor's
    document accepts, from the vendor registry), one of those; else DestinationConfigError naming
    the variable. An `allowed` entry that is no kind at all is an error too (a typo in the registry)."""
    where = f"{env_name(vendor, 'DESTINATION')}" if vendor else "the destination kind"
    who = f"vendor {vendor!r}: " if vendor else ""
    if kind not in BY_KIND:
        raise DestinationConfigError(f"{who}unknown destination kind {kind!r} in {where}; "
                                     f"expected one of {', '.join(KINDS)}")
    if allowed is not None:
        unknown = [k for k in allowed if k not in BY_KIND]
        if unknown:
            raise DestinationConfigError(f"{who}allowed destination kinds {unknown} are not kinds; "
                                         f"expected some of {', '.join(KINDS)}")
        if kind not in allowed:
            raise DestinationConfigError(f"{who}{where}={kind!r} is not a destination the vendor's document "
                                         f"allows; allowed: {', '.join(allowed)}")
    return kind
