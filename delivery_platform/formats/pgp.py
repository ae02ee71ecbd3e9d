"""PGP encryption to a vendor's public key, optionally signed with ours (python-gnupg over the
machine's gpg), in a throwaway keyring so nothing is left in the user's own; the agent of that
keyring is stopped afterwards."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import gnupg


class PGPError(RuntimeError):
    pass


def encrypt_file(source: Path, target: Path, public_key: str, *, signing_key: str | None = None,
                 passphrase: str | None = None) -> str:
    """Encrypt `source` to the (ASCII-armoured) `public_key`, and sign it with our (armoured,
    secret) `signing_key` when given; returns the recipient key's fingerprint."""
    home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))  # short path: the agent socket has a length limit
    try:
        gpg = gnupg.GPG(gnupghome=str(home))
        imported = gpg.import_keys(public_key)
        if not imported.fingerprints:
            raise PGPError("the PGP public key could not be imported (is it an ASCII-armoured public key?)")
        fingerprint = imported.fingerprints[0]
        signer = None
        if signing_key:
            secret = gpg.import_keys(signing_key, passphrase=passphrase)
            ours = [k["fingerprint"] for k in gpg.list_keys(secret=True)
                    if k["fingerprint"] in secret.fingerprints]
            if not ours:
                raise PGPError("our PGP private key could not be imported to sign "
                               "(is it an ASCII-armoured secret key?)")
            signer = ours[0]
        with open(source, "rb") as handle:
            result = gpg.encrypt_file(handle, recipients=[fingerprint], output=str(target), always_trust=True,
                                      armor=False, sign=signer, passphrase=passphrase)
        if not result.ok:
            # the status names the failing step (e.g. a wrong passphrase); never the passphrase itself
            raise PGPError(f"PGP {'signing and ' if signer else ''}encryption of {Path(source).name} failed: "
                           f"{result.status}")
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
