"""The preflight probes: small, independent questions about tonight's delivery, each answered with
pass or fail, what was seen, and what to do about it. Pure functions over resources (no Dagster
context), so tests call them directly against the local servers and the job only reports them.

Secrets are never put in a result: messages name environment variables, never their values.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from ..core import clock
from ..destinations import Destination, DestinationError, DestinationResource
from ..destinations.base import clean_name
from ..destinations.base import env_name
from ..warehouse.resource import WarehouseResource
from ..readiness import table_status
from ..registry import Deliverable
from ..warehouse.schema import LOAD_MARKS

if TYPE_CHECKING:
    import paramiko

MISSING_VAR = re.compile(r'environment variable "([A-Za-z0-9_]+)"')


@dataclass
class ProbeResult:
    probe: str
    passed: bool
    detail: str
    remedy: str = ""
    warn_only: bool = False  # a WARN (something to fix soon) rather than a failure of tonight's run
    metadata: dict = field(default_factory=dict)

    def text(self) -> str:
        return self.detail + (f" Remedy: {self.remedy}" if self.remedy and not self.passed else "")


def resolve(resource: dg.ConfigurableResource) -> dg.ConfigurableResource:
    """The resource with its EnvVars read now; a missing variable raises naming only the variable."""
    try:
        return resource.process_config_and_initialize()
    except dg.DagsterInvalidConfigError as exc:
        missing = MISSING_VAR.search(str(exc))
        raise DestinationError(
            f"environment variable {missing.group(1) if missing else '?'} is not set"
        ) from None


def safe_error(exc: BaseException) -> str:
    """Our own errors are written to be shown; a client library's text may quote a request URL (an
    Azure SAS, say), so only its type and error code are."""
    if isinstance(exc, (DestinationError, FileNotFoundError)):
        return str(exc) or type(exc).__name__
    code = getattr(exc, "error_code", None) or getattr(exc, "code", None)
    return f"{type(exc).__name__}{f' ({code})' if code else ''}"


# --- credentials and reachability -------------------------------------------------------------
def credentials(
    resource: DestinationResource, folder: str = ""
) -> tuple[ProbeResult, DestinationResource | None]:
    """The destination's settings and secrets resolve and it answers an authenticated read."""
    where = resource.describe()
    try:
        resolved = resolve(resource)
        with resolved.get() as dest:
            reach(dest, folder)
    except Exception as exc:  # noqa: BLE001 - a refusal of any kind is the probe's answer
        return ProbeResult(
            "credentials",
            False,
            f"{resource.vendor}: {where}: {safe_error(exc)}",
            f"set the DELIVERY_{resource.vendor.upper()}_* variables of a {resource.kind} destination "
            "(docs/destinations.md) and check the account's permissions",
        ), None
    return ProbeResult(
        "credentials",
        True,
        f"{where} answers an authenticated read" + (f" and has the folder {folder}/" if folder else ""),
    ), resolved


def reach(dest: Destination, folder: str = "") -> None:
    """One cheap authenticated request (never a recursive listing of a large account)."""
    kind = dest.kind
    if kind == "sftp":
        try:
            dest.sftp.stat(dest._path(folder))
        except FileNotFoundError:
            raise DestinationError(f"{dest.uri(folder)} does not exist") from None
    elif kind == "local":
        pass  # a local folder is created by the first publish; the write probe tests the rights
    else:  # object stores: a listing under a prefix nothing else uses is one small request
        dest.list(f"{folder}/_preflight" if folder else "_preflight")


# --- the write / stat / delete probe ----------------------------------------------------------
def remove(dest: Destination, name: str) -> None:
    """Delete one object (the destination interface has no delete: nothing else may remove files)."""
    name = clean_name(name)
    if dest.kind == "local":
        path = dest.root / name
        path.unlink()
        for parent in list(path.relative_to(dest.root).parents)[:-1]:  # folders the probe created
            try:
                (dest.root / parent).rmdir()
            except OSError:
                break
    elif dest.kind == "s3":
        dest.client.delete_object(Bucket=dest.bucket, Key=dest._key(name))
    elif dest.kind == "gcs":
        dest.bucket.blob(dest._key(name)).delete(timeout=dest.timeout)
    elif dest.kind == "azure":
        dest.client.delete_blob(dest._key(name))
    elif dest.kind == "sftp":
        dest.sftp.remove(dest._path(name))
        folders = name.split("/")[:-1]
        for depth in range(len(folders), 0, -1):
            try:
                dest.sftp.rmdir(dest._path("/".join(folders[:depth])))
            except OSError:
                break
    else:
        raise DestinationError(f"cannot delete from a {dest.kind} destination")


def write_probe(resource: DestinationResource | None, deliverable: Deliverable, workdir: Path) -> ProbeResult:
    if deliverable.probe_name is None:
        return ProbeResult("write_probe", True, deliverable.probe_why, metadata={"skipped": True})
    if resource is None:
        return ProbeResult(
            "write_probe", False, "not run: the credentials probe failed", "fix the credentials first"
        )
    name = deliverable.probe_name(probe_token())
    empty = workdir / "preflight.empty"
    empty.write_bytes(b"")
    step = "write"
    try:
        with resource.get() as dest:
            dest.publish(empty, name)
            step = "stat"
            size = dest.stat(name).size
            step = "delete"
            remove(dest, name)
            if dest.exists(name):
                raise DestinationError(f"{dest.uri(name)} is still there after the delete")
            uri = dest.uri(name)
    except Exception as exc:  # noqa: BLE001 - whatever the store answers is the probe's result
        text = safe_error(exc)
        return ProbeResult(
            "write_probe",
            False,
            f"{step} of the empty probe object {name} failed: {text}",
            f"give the account write and delete rights on its folder ({resource.describe()}); "
            f"if the {step} step left {name} behind, delete it",
            metadata={"probe_object": name},
        )
    return ProbeResult(
        "write_probe",
        size == 0,
        f"wrote, read back ({size} bytes) and deleted {uri}. " + deliverable.probe_why,
        metadata={"probe_object": uri},
    )


# --- SFTP host key ---------------------------------------------------------------------------
def _fingerprint(key: "paramiko.PKey") -> str:
    import hashlib

    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def sftp_host_key(resource: DestinationResource, timeout: float = 20.0) -> ProbeResult:
    """The key the server shows now is the pinned one (SFTP_HOST_KEY or the known_hosts file)."""
    import paramiko  # here, not at module level: 45 ms of every code-location load, needed only by this probe

    store = resource.store  # an SFTPDestinationConfig: callers ask only when the kind is sftp
    vendor, host, port = resource.vendor, store.host, store.port
    pinned: list[paramiko.PKey] = []
    if store.host_key:
        key_type, key_b64 = store.host_key.split()[:2]
        pinned.append(paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64)))
    elif store.known_hosts_file:
        known = paramiko.HostKeys(store.known_hosts_file)
        entry = known.lookup(host if port == 22 else f"[{host}]:{port}") or {}
        pinned.extend(entry.values())
    transport = paramiko.Transport((host, port))
    try:
        if pinned:  # ask for the pinned key's type, so a server with several keys shows the comparable one
            transport.get_security_options().key_types = tuple({k.get_name() for k in pinned})
        transport.start_client(timeout=timeout)
        seen = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError) as exc:
        return ProbeResult(
            "sftp_host_key",
            False,
            f"cannot read the host key of {host}:{port}: {type(exc).__name__}",
            f"check {env_name(vendor, 'SFTP_HOST')} and {env_name(vendor, 'SFTP_PORT')}",
        )
    finally:
        transport.close()
    meta = {"host": f"{host}:{port}", "seen_fingerprint": _fingerprint(seen)}
    if not pinned:
        return ProbeResult(
            "sftp_host_key",
            False,
            f"no host key pinned for {host}:{port}; the server shows {seen.get_name()} {_fingerprint(seen)}",
            f"pin it: set {env_name(vendor, 'SFTP_HOST_KEY')}"
            f"='{seen.get_name()} {seen.get_base64()}' after confirming it with the vendor",
            warn_only=True,
            metadata=meta,
        )
    if any(k.asbytes() == seen.asbytes() for k in pinned):
        return ProbeResult(
            "sftp_host_key", True, f"{host}:{port} shows the pinned key {_fingerprint(seen)}", metadata=meta
        )
    return ProbeResult(
        "sftp_host_key",
        False,
        f"{host}:{port} shows {seen.get_name()} {_fingerprint(seen)}, not the "
        f"pinned {', '.join(_fingerprint(k) for k in pinned)}: tonight's delivery will refuse to connect",
        "confirm the new key with the vendor out of band before pinning it "
        f"({env_name(vendor, 'SFTP_HOST_KEY')}); a key you cannot confirm may be an impostor",
        metadata={**meta, "pinned_fingerprints": [_fingerprint(k) for k in pinned]},
    )


# --- iSpot token -----------------------------------------------------------------------------
def ispot_token(api) -> ProbeResult:
    """A fresh token from the token endpoint (cached: tonight's upload reuses it, no extra request)."""
    if not api.configured:
        return ProbeResult(
            "ispot_token",
            True,
            "ISPOT_CLIENT_ID is not set: files go to the ispot_destination, not the API",
            metadata={"skipped": True},
        )
    try:
        client = resolve(api).client()
        client.token(fresh=True)
    except DestinationError as exc:
        status = getattr(exc, "status", None)
        remedy = (
            "iSpot refused the client credentials: check ISPOT_CLIENT_ID and ISPOT_CLIENT_SECRET "
            "with iSpot's Customer Success"
            if status in (400, 401)
            else "check ISPOT_API_BASE_URL and iSpot's status"
        )
        return ProbeResult(
            "ispot_token",
            False,
            f"the token endpoint {api.base_url} answered: {exc}",
            remedy,
            metadata={"status": status or 0},
        )
    return ProbeResult(
        "ispot_token",
        True,
        f"the token endpoint {api.base_url} issued a bearer token",
        metadata={"status": 200},
    )


# --- PGP -------------------------------------------------------------------------------------
def _gpg_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="gpf", dir="/tmp"))  # short: the agent socket path is limited


def _usable(key: dict, cap: str, now: dt.datetime) -> tuple[bool, str]:
    """Whether the key (or one of its subkeys) can `cap` ('e' or 's') at `now`, and its expiry."""
    candidates = [(key.get("cap", ""), key.get("expires", ""))]
    candidates += [
        (info.get("cap", ""), info.get("expires", "")) for info in key.get("subkey_info", {}).values()
    ]
    expiries = []
    for caps, expires in candidates:
        if cap not in caps.lower():
            continue
        when = dt.datetime.fromtimestamp(int(expires), dt.timezone.utc) if expires else None
        expiries.append(when)
        if when is None or when > now:
            return True, f"valid until {when:%Y-%m-%d}" if when else "no expiry"
    if not expiries:
        return False, f"has no key that can {'encrypt' if cap == 'e' else 'sign'}"
    return False, f"expired on {max(e for e in expiries if e):%Y-%m-%d}"


def pgp_keys(
    public_key_file: str | None,
    private_key_file: str | None = None,
    passphrase: str | None = None,
    env_prefix: str = "IDOMOO",
) -> ProbeResult:
    """The vendor's public key exists, is not expired (by the clock) and encrypts; our key, when
    configured, is not expired and signs."""
    import gnupg

    if not public_key_file:
        return ProbeResult(
            "pgp_keys",
            True,
            f"{env_prefix}_PGP_PUBLIC_KEY_FILE is not set: files are not encrypted",
            metadata={"skipped": True},
        )
    now, home = clock.now(), _gpg_home()
    try:
        path = Path(public_key_file)
        if not path.is_file():
            return ProbeResult(
                "pgp_keys",
                False,
                f"the vendor's public key file {path} does not exist",
                f"put the key the vendor gave you at {path} ({env_prefix}_PGP_PUBLIC_KEY_FILE)",
            )
        gpg = gnupg.GPG(gnupghome=str(home))
        imported = gpg.import_keys(path.read_text())
        if not imported.fingerprints:
            return ProbeResult(
                "pgp_keys",
                False,
                f"{path} holds no OpenPGP public key",
                "replace it with the vendor's ASCII-armoured public key",
            )
        key = next(k for k in gpg.list_keys() if k["fingerprint"] == imported.fingerprints[0])
        meta = {"vendor_key": key["fingerprint"], "uids": ", ".join(key.get("uids", []))}
        ok, why = _usable(key, "e", now)
        if not ok:
            return ProbeResult(
                "pgp_keys",
                False,
                f"the vendor's key {key['fingerprint'][-16:]} {why}",
                "ask the vendor for a renewed public key and replace "
                f"{env_prefix}_PGP_PUBLIC_KEY_FILE before tonight's run",
                metadata=meta,
            )
        sealed = gpg.encrypt(b"preflight", [key["fingerprint"]], always_trust=True, armor=False)
        if not sealed.ok:
            return ProbeResult(
                "pgp_keys",
                False,
                f"encrypting to {key['fingerprint'][-16:]} failed: {sealed.status}",
                "check the vendor's key (gpg --list-keys) and replace it",
                metadata=meta,
            )
        detail = f"the vendor's key {key['fingerprint'][-16:]} encrypts ({why})"
        if private_key_file:
            ours = (
                gpg.import_keys(Path(private_key_file).read_text())
                if Path(private_key_file).is_file()
                else None
            )
            if not ours or not ours.fingerprints:
                return ProbeResult(
                    "pgp_keys",
                    False,
                    f"our private key file {private_key_file} is missing or unreadable",
                    f"restore our key at {env_prefix}_PGP_PRIVATE_KEY_FILE",
                    metadata=meta,
                )
            mine = next(k for k in gpg.list_keys(True) if k["fingerprint"] in ours.fingerprints)
            mine = next((k for k in gpg.list_keys() if k["fingerprint"] == mine["fingerprint"]), mine)
            ok, why_ours = _usable(mine, "s", now)
            if not ok:
                return ProbeResult(
                    "pgp_keys",
                    False,
                    f"our key {mine['fingerprint'][-16:]} {why_ours}",
                    "extend our key's expiry (gpg --quick-set-expire) and send the vendor the "
                    "refreshed public key",
                    metadata=meta,
                )
            signed = gpg.sign(b"preflight", keyid=mine["fingerprint"], passphrase=passphrase or "")
            if not signed.data:
                return ProbeResult(
                    "pgp_keys",
                    False,
                    f"signing with our key {mine['fingerprint'][-16:]} failed ({signed.status})",
                    f"check {env_prefix}_PGP_PASSPHRASE",
                    metadata=meta,
                )
            detail += f"; our key {mine['fingerprint'][-16:]} signs ({why_ours})"
        return ProbeResult("pgp_keys", True, detail, metadata=meta)
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False
        )
        shutil.rmtree(home, ignore_errors=True)


def probe_token() -> str:
    """Unique per write probe: the clock's time (readable in a listing) and a random part."""
    return f"{clock.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


# --- the warehouse has the day's data ---------------------------------------------------------
def warehouse_day(
    warehouse: WarehouseResource,
    deliverable: Deliverable,
    day: dt.date,
    min_rows: int = 1,
    slack_hours: float = 6.0,
) -> ProbeResult:
    """Rows for the day, and the table loaded up to (nearly) the day's end. "The day's rows" and "loaded up
    to" are the warehouse's own answer (warehouse/schema.py LOAD_MARKS), the one the readiness check reads."""
    start = dt.datetime.combine(day, dt.time())
    end = start + dt.timedelta(days=1)
    table = deliverable.source
    mark = LOAD_MARKS.get(table)
    if mark is None:
        return ProbeResult("warehouse_day", False, f"{table} has no load mark (warehouse/schema.py LOAD_MARKS)",
                           "add the table's load mark so readiness and preflight can tell its day")
    try:
        with warehouse.connect() as con:
            status = table_status(con, table, mark, day.isoformat())
    except Exception as exc:  # noqa: BLE001 - a missing file or table is the answer
        return ProbeResult(
            "warehouse_day",
            False,
            f"cannot read {table}: {str(exc).splitlines()[0][:300]}",
            "check the warehouse file (DELIVERY_WAREHOUSE_PATH) and the load job of the table",
        )
    rows, newest = status["rows"], status["loaded_through"]
    meta = {
        "table": table,
        "day": day.isoformat(),
        "rows": int(rows),
        "newest": newest.isoformat(sep=" ") if isinstance(newest, dt.datetime) else str(newest or ""),
    }
    if rows < min_rows:
        return ProbeResult(
            "warehouse_day",
            False,
            f"{table} has {rows:,} rows for {day} (at least {min_rows:,} "
            "expected): tonight's file would be empty",
            f"check that the load of {table} for {day} ran; re-run it, then launch this preflight again",
            metadata=meta,
        )
    needed = end - dt.timedelta(hours=slack_hours)
    if newest is None or newest < needed:
        return ProbeResult(
            "warehouse_day",
            False,
            f"{table} has {rows:,} rows for {day} but its loads reach only {meta['newest'] or 'nothing'}, "
            f"before {needed:%Y-%m-%d %H:%M} UTC: the day looks partly loaded",
            f"wait for or re-run the load of {table}",
            metadata=meta,
        )
    return ProbeResult(
        "warehouse_day",
        True,
        f"{table} has {rows:,} rows for {day}; its loads reach {meta['newest']}",
        metadata=meta,
    )
