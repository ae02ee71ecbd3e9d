"""What the object stores share: key prefixes and a readable stream wrapper."""

from __future__ import annotations

import base64
from typing import Callable


def join_key(prefix: str, name: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


def strip_key(prefix: str, key: str) -> str:
    prefix = prefix.strip("/")
    return key[len(prefix) + 1:] if prefix else key


def b64_to_hex(value: str | bytes | bytearray | None) -> str | None:
    if not value:
        return None
    raw = base64.b64decode(value) if isinstance(value, str) else bytes(value)
    return raw.hex()


def hex_to_b64(md5_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(md5_hex)).decode()


class ReadStream:
    """A minimal binary stream (read, close, context manager) over a store's reader."""

    def __init__(self, read: Callable[[int], bytes], close: Callable[[], None] = lambda: None):
        self._read = read
        self._close = close

    def read(self, size: int = -1) -> bytes:
        return self._read(size)

    def close(self) -> None:
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
