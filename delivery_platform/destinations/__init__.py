"""Destinations: one small interface (base.py), five stores, one configuration class per kind of
store (config.py), chosen per vendor by `DestinationResource` (resource.py)."""

from .base import (AlreadyExists, Destination, DestinationConfigError, DestinationError, FileInfo, Published,
                   Publisher, env_name)
from .config import (KINDS, AzureBlobDestinationConfig, GCSDestinationConfig, LocalDestinationConfig,
                     S3DestinationConfig, SFTPDestinationConfig, validate_kind)
from .resource import ConfigurationFailure, DestinationResource, destination_from_env

__all__ = [
    "KINDS",
    "AlreadyExists",
    "AzureBlobDestinationConfig",
    "ConfigurationFailure",
    "Destination",
    "DestinationConfigError",
    "DestinationError",
    "DestinationResource",
    "FileInfo",
    "GCSDestinationConfig",
    "LocalDestinationConfig",
    "Published",
    "Publisher",
    "S3DestinationConfig",
    "SFTPDestinationConfig",
    "destination_from_env",
    "env_name",
    "validate_kind",
]
