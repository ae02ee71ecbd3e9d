"""Choosing a vendor's destination from environment variables.

Each vendor has one `DestinationResource` (resource key `<vendor>_destination`). Which kind it
is and its settings come from variables named `DELIVERY_<VENDOR>_<SETTING>`; secrets are
passed as Dagster `EnvVar`s so the UI shows the variable's name, never its value. With
nothing set, a vendor publishes to the local folder `data/outbox/<vendor>/`.

| setting            | variable suffix         | kinds         |
|--------------------|-------------------------|---------------|
| kind               | `DESTINATION`           | local (default), s3, gcs, azure, sftp |
| path prefix        | `PREFIX`                | all           |
| bucket             | `S3_BUCKET` / `GCS_BUCKET` | s3 / gcs   |
| S3 endpoint/region | `S3_ENDPOINT_URL`, `S3_REGION` | s3     |
| AWS keys (secret)  | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | s3 (else the default AWS chain) |
| GCS project        | `GCS_PROJECT`           | gcs           |
| Azure              | `AZURE_ACCOUNT_URL`, `AZURE_CONTAINER`, `AZURE_SAS_TOKEN` or `AZURE_ACCOUNT_KEY` (secret) | azure |
| SFTP               | `SFTP_HOST`, `SFTP_PORT`, `SFTP_USERNAME`, `SFTP_PASSWORD` (secret), `SFTP_PRIVATE_KEY_FILE`, `SFTP_HOST_KEY` (pinned `type base64` key) or `SFTP_KNOWN_HOSTS_FILE` (required in production) | sftp |
| request timeout    | `TIMEOUT` (seconds, default 60) | s3, gcs, azure, sftp |
| transient retries  | `RETRIES` (default 5; 5xx, throttling, drops, timeouts) | s3, gcs, azure, sftp |
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import dagster as dg

from .. import settings
from .base import Destination, DestinationConfigError

KINDS = ("local", "s3", "gcs", "azure", "sftp")
SECRET_SETTINGS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AZURE_SAS_TOKEN", "AZURE_ACCOUNT_KEY", "SFTP_PASSWORD")
PLAIN_SETTINGS = (
    "DESTINATION", "PREFIX", "LOCAL_ROOT", "S3_BUCKET", "S3_ENDPOINT_URL", "S3_REGION", "GCS_BUCKET",
    "GCS_PROJECT", "AZURE_ACCOUNT_URL", "AZURE_CONTAINER", "SFTP_HOST", "SFTP_PORT", "SFTP_USERNAME",
    "SFTP_PRIVATE_KEY_FILE", "SFTP_HOST_KEY", "SFTP_KNOWN_HOSTS_FILE", "TIMEOUT", "RETRIES",
)
NUMERIC_SETTINGS = {"SFTP_PORT": int, "TIMEOUT": float, "RETRIES": int}


def env_name(vendor: str, setting: str) -> str:
    return f"DELIVERY_{vendor.upper()}_{setting}"


class ConfigurationFailure(dg.Failure, DestinationConfigError):
    """A configuration error raised inside a run: a Dagster Failure that is never retried."""

    def __init__(self, message: str):
        dg.Failure.__init__(self, description=message, allow_retries=False)


class DestinationResource(dg.ConfigurableResource):
    """Where one vendor's files go. Build it with `destination_from_env(vendor)`."""

    vendor: str
    kind: str = "local"
    prefix: str = ""
    local_root: Optional[str] = None
    s3_bucket: Optional[str] = None
    s3_endpoint_url: Optional[str] = None
    s3_region: Optional[str] = None
    aws_access_key_id: Optional[str] = None
    aws_secret_access_key: Optional[str] = None
    gcs_bucket: Optional[str] = None
    gcs_project: Optional[str] = None
    azure_account_url: Optional[str] = None
    azure_container: Optional[str] = None
    azure_sas_token: Optional[str] = None
    azure_account_key: Optional[str] = None
    sftp_host: Optional[str] = None
    sftp_port: Optional[int] = None
    sftp_username: Optional[str] = None
    sftp_password: Optional[str] = None
    sftp_private_key_file: Optional[str] = None
    sftp_host_key: Optional[str] = None
    sftp_known_hosts_file: Optional[str] = None
    timeout: float = 60.0  # seconds one request may wait for the server
    retries: int = 5  # retries of a transient fault (5xx, throttling, drop, timeout), with backoff
    # SFTP servers without a pinned key: "strict" (production) refuses them, "accept-new" (local)
    # remembers the first key seen in data/known_hosts and refuses a changed one afterwards
    host_key_policy: str = "accept-new"

    def _require(self, **fields) -> None:
        missing = [name for name, value in fields.items() if not value]
        if missing:
            names = ", ".join(env_name(self.vendor, m.upper()) for m in missing)
            raise DestinationConfigError(
                f"vendor {self.vendor!r}: destination kind {self.kind!r} needs {names} to be set"
            )

    def _require_file(self, setting: str, path: Optional[str]) -> None:
        if path and not Path(path).is_file():
            raise DestinationConfigError(f"vendor {self.vendor!r}: {env_name(self.vendor, setting)} names {path}, "
                                         "which does not exist or is not a file")

    def validate(self) -> None:
        """Check the configuration without connecting: every missing or contradictory setting is a
        DestinationConfigError naming the exact variable (and path)."""
        kind = (self.kind or "local").lower()
        if kind not in KINDS:
            raise DestinationConfigError(
                f"vendor {self.vendor!r}: unknown destination kind {self.kind!r} in "
                f"{env_name(self.vendor, 'DESTINATION')}; expected one of {', '.join(KINDS)}"
            )
        if self.timeout <= 0 or self.retries < 0:
            raise DestinationConfigError(f"vendor {self.vendor!r}: {env_name(self.vendor, 'TIMEOUT')} must be > 0 "
                                         f"and {env_name(self.vendor, 'RETRIES')} >= 0")
        if kind == "s3":
            self._require(s3_bucket=self.s3_bucket)
            if bool(self.aws_access_key_id) != bool(self.aws_secret_access_key):
                raise DestinationConfigError(
                    f"vendor {self.vendor!r}: set both {env_name(self.vendor, 'AWS_ACCESS_KEY_ID')} and "
                    f"{env_name(self.vendor, 'AWS_SECRET_ACCESS_KEY')}, or neither (to use the default AWS chain)")
        elif kind == "gcs":
            self._require(gcs_bucket=self.gcs_bucket)
        elif kind == "azure":
            self._require(azure_account_url=self.azure_account_url, azure_container=self.azure_container)
            if not (self.azure_sas_token or self.azure_account_key):
                raise DestinationConfigError(
                    f"vendor {self.vendor!r}: destination kind 'azure' needs "
                    f"{env_name(self.vendor, 'AZURE_SAS_TOKEN')} or {env_name(self.vendor, 'AZURE_ACCOUNT_KEY')}"
                )
        elif kind == "sftp":
            self._require(sftp_host=self.sftp_host, sftp_username=self.sftp_username)
            if not (self.sftp_password or self.sftp_private_key_file):
                raise DestinationConfigError(
                    f"vendor {self.vendor!r}: destination kind 'sftp' needs "
                    f"{env_name(self.vendor, 'SFTP_PASSWORD')} or {env_name(self.vendor, 'SFTP_PRIVATE_KEY_FILE')}"
                )
            self._require_file("SFTP_PRIVATE_KEY_FILE", self.sftp_private_key_file)
            self._require_file("SFTP_KNOWN_HOSTS_FILE", self.sftp_known_hosts_file)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # a run whose destination is misconfigured fails when the step starts, at once and without
        # retries (a retry cannot fix a missing variable), with one short line instead of a traceback
        try:
            self.validate()
        except DestinationConfigError as exc:
            raise ConfigurationFailure(str(exc)) from None

    def get(self, logger: Optional[logging.Logger] = None) -> Destination:
        """Open the configured destination (call `close()` or use it as a context manager);
        `logger` (a run's `context.log`) receives reconnect and retry messages."""
        self.validate()
        kind = (self.kind or "local").lower()
        if kind == "local":
            from .local import LocalDestination

            root = Path(self.local_root) if self.local_root else settings.outbox_dir() / self.vendor
            return LocalDestination(self.vendor, root / self.prefix if self.prefix else root)
        if kind == "s3":
            from dagster_aws.s3 import S3Resource

            from .s3 import S3Destination

            s3 = S3Resource(endpoint_url=self.s3_endpoint_url, region_name=self.s3_region or "us-east-1",
                            aws_access_key_id=self.aws_access_key_id,
                            aws_secret_access_key=self.aws_secret_access_key, max_attempts=self.retries + 1)
            return S3Destination(self.vendor, bucket=self.s3_bucket, s3=s3, prefix=self.prefix,
                                 timeout=self.timeout)
        if kind == "gcs":
            from .gcs import GCSDestination

            return GCSDestination(self.vendor, bucket=self.gcs_bucket, prefix=self.prefix, project=self.gcs_project,
                                  timeout=self.timeout, retries=self.retries)
        if kind == "azure":
            from dagster_azure.blob import (AzureBlobStorageKeyCredential, AzureBlobStorageResource,
                                            AzureBlobStorageSASTokenCredential)

            from .azure_blob import AzureBlobDestination

            if self.azure_sas_token:
                credential = AzureBlobStorageSASTokenCredential(token=self.azure_sas_token)
            else:
                credential = AzureBlobStorageKeyCredential(key=self.azure_account_key)
            azure = AzureBlobStorageResource(account_url=self.azure_account_url, credential=credential)
            return AzureBlobDestination(self.vendor, container=self.azure_container, azure=azure,
                                        prefix=self.prefix, timeout=self.timeout, retries=self.retries)
        from .sftp import SFTPDestination

        return SFTPDestination(
            self.vendor,
            host=self.sftp_host,
            port=self.sftp_port or 22,
            username=self.sftp_username,
            password=self.sftp_password,
            private_key_file=self.sftp_private_key_file,
            host_key=self.sftp_host_key,
            known_hosts_file=self.sftp_known_hosts_file,
            root=self.prefix,
            timeout=self.timeout,
            retries=self.retries,
            host_key_policy=self.host_key_policy,
            logger=logger,
        )

    def describe(self) -> str:
        """Human summary for metadata: kind and place, never a credential."""
        place = {
            "local": self.local_root or str(settings.outbox_dir() / self.vendor),
            "s3": f"s3://{self.s3_bucket}",
            "gcs": f"gs://{self.gcs_bucket}",
            "azure": f"{self.azure_account_url}/{self.azure_container}",
            "sftp": f"sftp://{self.sftp_username}@{self.sftp_host}:{self.sftp_port or 22}",
        }.get(self.kind, "?")
        return f"{self.kind} {place}/{self.prefix}".rstrip("/")


def destination_from_env(vendor: str, environ: Optional[dict] = None,
                         env: Optional[str] = None) -> DestinationResource:
    """The vendor's destination as the environment configures it (local when unset).

    Secrets become `EnvVar`s, so their values are read when a run starts and never stored in
    the definitions; plain settings are read now. `env` (default `DELIVERY_ENV`) decides the
    SFTP host-key policy: production never trusts an unpinned server.
    """
    environ = os.environ if environ is None else environ
    env = env or environ.get("DELIVERY_ENV", "local")
    kwargs: dict = {"vendor": vendor, "host_key_policy": "strict" if env == "production" else "accept-new"}
    for setting in PLAIN_SETTINGS:
        value = environ.get(env_name(vendor, setting))
        if value:
            field = "kind" if setting == "DESTINATION" else setting.lower()
            try:
                kwargs[field] = NUMERIC_SETTINGS.get(setting, str)(value)
            except ValueError:
                raise DestinationConfigError(f"vendor {vendor!r}: {env_name(vendor, setting)}={value!r} is not a "
                                             f"{NUMERIC_SETTINGS[setting].__name__}") from None
    for setting in SECRET_SETTINGS:
        if environ.get(env_name(vendor, setting)):
            kwargs[setting.lower()] = dg.EnvVar(env_name(vendor, setting))
    kind = kwargs.get("kind", "local").lower()
    if kind not in KINDS:
        raise DestinationConfigError(
            f"vendor {vendor!r}: unknown destination kind {kind!r} in {env_name(vendor, 'DESTINATION')}; "
            f"expected one of {', '.join(KINDS)}"
        )
    kwargs["kind"] = kind
    return DestinationResource(**kwargs)
