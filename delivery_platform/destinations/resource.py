"""A vendor's destination as a Dagster resource, and building it from environment variables.

Each vendor has one `DestinationResource` (resource key `<vendor>_destination`) holding the
configuration of exactly one store (`store`, config.py: one class per kind, chosen by `kind`).
`destination_from_env(vendor)` builds it from variables named `DELIVERY_<VENDOR>_<SETTING>`;
secrets are passed as Dagster `EnvVar`s so the UI shows the variable's name, never its value. With
nothing set, a vendor publishes to the local folder `data/outbox/<vendor>/`.

| setting            | variable suffix         | kinds         |
|--------------------|-------------------------|---------------|
| kind               | `DESTINATION`           | local (default), s3, gcs, azure, sftp |
| path prefix        | `PREFIX`                | all           |
| local folder       | `LOCAL_ROOT`            | local         |
| bucket             | `S3_BUCKET` / `GCS_BUCKET` | s3 / gcs   |
| S3 endpoint/region | `S3_ENDPOINT_URL`, `S3_REGION` | s3     |
| AWS keys (secret)  | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | s3 (else the default AWS chain) |
| GCS project        | `GCS_PROJECT`           | gcs           |
| Azure              | `AZURE_ACCOUNT_URL`, `AZURE_CONTAINER`, `AZURE_SAS_TOKEN` or `AZURE_ACCOUNT_KEY` (secret) | azure |
| SFTP               | `SFTP_HOST`, `SFTP_PORT`, `SFTP_USERNAME`, `SFTP_PASSWORD` (secret), `SFTP_PRIVATE_KEY_FILE`, `SFTP_HOST_KEY` (pinned `type base64` key) or `SFTP_KNOWN_HOSTS_FILE` (required in production) | sftp |
| request timeout    | `TIMEOUT` (seconds, default 60) | s3, gcs, azure, sftp |
| transient retries  | `RETRIES` (default 5; 5xx, throttling, drops, timeouts) | s3, gcs, azure, sftp |

A variable of another kind than the chosen one (say `SFTP_HOST` with `DESTINATION=s3`) is refused
when the definitions load, as an unknown kind is: the operator meant something else.
"""

from __future__ import annotations

import logging
import os
from typing import List, Optional

import dagster as dg
from pydantic import Field

from .base import Destination, DestinationConfigError, env_name
from .config import (BY_KIND, KINDS, AzureBlobDestinationConfig, GCSDestinationConfig, LocalDestinationConfig,
                     S3DestinationConfig, SFTPDestinationConfig, StoreConfigs, validate_kind)

__all__ = [
    "AzureBlobDestinationConfig", "ConfigurationFailure", "DestinationResource", "GCSDestinationConfig", "KINDS",
    "LocalDestinationConfig", "S3DestinationConfig", "SFTPDestinationConfig", "destination_from_env",
    "destination_kind_from_env", "env_name",
    "validate_kind",
]


class ConfigurationFailure(dg.Failure, DestinationConfigError):
    """A configuration error raised inside a run: a Dagster Failure that is never retried."""

    def __init__(self, message: str):
        dg.Failure.__init__(self, description=message, allow_retries=False)


class DestinationResource(dg.ConfigurableResource):
    """Where one vendor's files go: one store's configuration, chosen by its `kind`.
    Build it with `destination_from_env(vendor)`."""

    vendor: str
    store: StoreConfigs = Field(default_factory=LocalDestinationConfig, discriminator="kind",
                                description="The store and its settings, one kind: local, s3, gcs, azure or sftp.")
    # the kinds the vendor's document accepts (the vendor registry's); None: any kind
    allowed_kinds: Optional[List[str]] = None

    @property
    def kind(self) -> str:
        return self.store.kind

    def validate(self) -> None:
        """Check the configuration without connecting: every missing or contradictory setting is a
        DestinationConfigError naming the exact variable (and path)."""
        validate_kind(self.kind, self.allowed_kinds, self.vendor)
        self.store.check(self.vendor)

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
        return self.store.open(self.vendor, logger)

    def describe(self) -> str:
        """Human summary for metadata: kind and place, never a credential."""
        return f"{self.kind} {self.store.place(self.vendor)}/{self.store.prefix}".rstrip("/")


def destination_kind_from_env(vendor: str, environ: Optional[dict] = None) -> str:
    """The kind of the vendor's destination (`DELIVERY_<VENDOR>_DESTINATION`, local when unset),
    without building the resource (building one costs ~9 ms of config-schema work)."""
    environ = os.environ if environ is None else environ
    return validate_kind((environ.get(env_name(vendor, "DESTINATION")) or "local").lower(), None, vendor)


def destination_from_env(vendor: str, environ: Optional[dict] = None, env: Optional[str] = None,
                         allowed=None) -> DestinationResource:
    """The vendor's destination as the environment configures it (local when unset).

    Secrets become `EnvVar`s, so their values are read when a run starts and never stored in
    the definitions; plain settings are read now. `env` (default `DELIVERY_ENV`) decides the
    SFTP host-key policy: production never trusts an unpinned server. `allowed` (the kinds the
    vendor's document accepts) is checked when a run starts, so one vendor's mistake does not stop
    the others from loading.
    """
    environ = os.environ if environ is None else environ
    env = env or environ.get("DELIVERY_ENV", "local")
    kind = destination_kind_from_env(vendor, environ)
    cls = BY_KIND[kind]
    kwargs: dict = {}
    stray = sorted({env_name(vendor, setting) for other in BY_KIND.values() for setting in other.ENV
                    if setting not in cls.ENV and environ.get(env_name(vendor, setting))})
    if stray:
        owners = sorted({k for k, c in BY_KIND.items() if any(env_name(vendor, s) in stray for s in c.ENV)})
        raise DestinationConfigError(
            f"vendor {vendor!r}: {', '.join(stray)} {'is not a setting' if len(stray) == 1 else 'are not settings'} of a "
            f"{kind!r} destination ({env_name(vendor, 'DESTINATION')}={kind}) but of {', '.join(owners)}; "
            "unset them, or set the destination kind they belong to")
    for setting, field in cls.ENV.items():
        name = env_name(vendor, setting)
        value = environ.get(name)
        if not value:
            continue
        if field in cls.SECRETS:
            kwargs[field] = dg.EnvVar(name)
            continue
        convert = {int: int, float: float}.get(cls.model_fields[field].annotation, str)
        try:
            kwargs[field] = convert(value)
        except ValueError:
            raise DestinationConfigError(f"vendor {vendor!r}: {name}={value!r} is not a {convert.__name__}") from None
    if kind == "sftp":
        kwargs["host_key_policy"] = "strict" if env == "production" else "accept-new"
    return DestinationResource(vendor=vendor, store=cls(**kwargs),
                               allowed_kinds=list(allowed) if allowed is not None else None)
