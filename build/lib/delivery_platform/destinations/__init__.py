"""Destinations: one small interface (base.py), five stores, chosen per vendor (resource.py)."""

from .base import AlreadyExists, Destination, DestinationConfigError, DestinationError, FileInfo, Published
from .resource import DestinationResource, destination_from_env, env_name

__all__ = [
    "AlreadyExists",
    "Destination",
    "DestinationConfigError",
    "DestinationError",
    "DestinationResource",
    "FileInfo",
    "Published",
    "destination_from_env",
    "env_name",
]
