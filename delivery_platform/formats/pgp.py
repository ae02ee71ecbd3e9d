"""PGP encryption to a vendor's public key (python-gnupg over the machine's gpg), in a throwaway
keyring so nothing is left in the user's own; the agent of that keyring is stopped afterwards."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import gnupg


class PGPError(RuntimeError):
    pass


def encrypt_file(source: Path, target: Path, public_key: str) -> str:
    """Encrypt `source` to the (ASCII-armoured) `public_key`; returns the key's fingerprint."""
    home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))  # short path: the agent socket has a length limit
    try:
        gpg = gnupg.GPG(gnupghome=str(home))
        imported = gpg.import_keys(public_key)
        if not imported.fingerprints:
            raise PGPError("the PGP public key could not be imported (is it an ASCII-armoured public key?)")
        fingerprint = imported.fingerprints[0]
        with open(source, "rb") as handle:
            result = gpg.encrypt_file(handle, recipients=[fingerprint], output=str(target), always_trust=True, armor=False)
        if not result.ok:
            raise PGPError(f"PGP encryption of {Path(source).name} failed: {result.status}")
        return fingerprint
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def is_pgp_message(path: Path) -> bool:
    """True when `path` parses as an OpenPGP message (checked with `gpg --list-packets`)."""
    home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
    try:
        done = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--list-packets", str(path)],
                              capture_output=True, text=True, check=False)
        return ":pubkey enc packet:" in done.stdout
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def decrypt_bytes(data: bytes, private_key: str, passphrase: str | None = None) -> bytes:
    """Decrypt an OpenPGP message with our (ASCII-armoured) private key, in a throwaway keyring."""
    home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
    try:
        gpg = gnupg.GPG(gnupghome=str(home))
        if not gpg.import_keys(private_key).fingerprints:
            raise PGPError("our PGP private key could not be imported")
        result = gpg.decrypt(data, passphrase=passphrase)
        if not result.ok:
            raise PGPError(f"PGP decryption failed: {result.status}")
        return result.data
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)
