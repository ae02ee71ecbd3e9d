"""iSpot's own uploader: the iSpot.tv conversions upload API (OAuth2 client credentials).

Why here and not a destination: the documented protocol has two endpoints, a token and an upload.
Nothing lists what was uploaded or reads a file back, so a `Destination` (publish, list, stat, open,
verify) could only fake half its contract. The uploader is a `Publisher` (destinations/base.py):
it publishes and names what it published, says `can_read_back = False`, and the delivery ledger is
the record of what iSpot received (a 409 is accepted only for bytes an earlier attempt of ours sent).

Protocol, from the document's "Authentication", "Making an API call" and status table:
- token: POST {base}/v4/oauth2/token, form body client_id, client_secret,
  grant_type=client_credentials (the document says "headers" but both its examples send a
  form body: DIGEST 2.3 #9); the bearer token lives 24 h and iSpot asks to request few;
- upload: POST {base}/v4/metrics/conversions, multipart/form-data, field `upload[file]`,
  header `Authorization: Bearer ...`;
- 201 uploaded; 400 the file or request is wrong (never retried); 401 token refused (one
  fresh token, then fail); 409 a file of that name exists; 500 and 429/502/503/504 and
  dropped connections are retried with bounded exponential backoff honouring Retry-After.

The token is cached in a file (mode 0600) so that runs, which are separate processes, share it
until shortly before it expires. The client secret and the token never appear in logs,
metadata or exception texts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import dagster as dg

from ... import settings
from ...core.files import file_md5
from ...destinations.base import AlreadyExists, DestinationConfigError, DestinationError, Published, Publisher

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

TOKEN_PATH = "/v4/oauth2/token"
UPLOAD_PATH = "/v4/metrics/conversions"
UPLOAD_FIELD = "upload[file]"
RETRYABLE = {429, 500, 502, 503, 504}
# failures after which the server may have stored the upload even though we got no 201 (R4)
MAYBE_STORED = {500, 502, 504}
TOKEN_MARGIN_S = 600  # renew ten minutes before expiry


class ISpotApiError(DestinationError):
    """The API refused or failed; the message names the file and iSpot's answer."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ISpotRejected(ISpotApiError):
    """A 400: the file or the request is wrong. Retrying cannot help."""


def _problem(response: requests.Response) -> str:
    """iSpot's message from a problem+json or text body, cut short, never echoing a token."""
    try:
        body = response.json()
        text = body.get("detail") or body.get("title") or body.get("message") or json.dumps(body)
    except ValueError:
        text = response.text
    text = " ".join(str(text).split())[:300]
    return text or response.reason or "no message"


@dataclass
class _Token:
    value: str
    expires_at: float


class ISpotClient:
    def __init__(self, base_url: str, client_id: str, client_secret: str, *, token_cache: Path | None = None,
                 timeout_s: float = 120.0, max_attempts: int = 5, backoff_s: float = 2.0, max_backoff_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep):
        if not client_id or not client_secret:
            raise DestinationConfigError("iSpot API: ISPOT_CLIENT_ID and ISPOT_CLIENT_SECRET must both be set")
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        key = hashlib.sha256(f"{self.base_url}|{client_id}".encode()).hexdigest()[:16]
        self.token_cache = token_cache or settings.data_dir() / "tokens" / f"ispot-{key}.json"
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        import requests  # here, not at module level: ~35 ms of every code-location load, needed only to upload

        self.session = requests.Session()
        self.token_requests = 0
        self.maybe_stored = False  # set by _send: an earlier try of this call may have reached the server

    def __repr__(self) -> str:  # never show the secret
        return f"ISpotClient({self.base_url!r}, client_id={self.client_id!r})"

    # --- token -------------------------------------------------------------------------------
    def _cached_token(self) -> _Token | None:
        try:
            data = json.loads(self.token_cache.read_text())
            token = _Token(data["access_token"], float(data["expires_at"]))
        except (OSError, ValueError, KeyError):
            return None
        return token if token.expires_at - TOKEN_MARGIN_S > time.time() else None

    def _store_token(self, token: _Token) -> None:
        self.token_cache.parent.mkdir(parents=True, exist_ok=True)
        partial = self.token_cache.with_name(self.token_cache.name + f".{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"access_token": token.value, "expires_at": token.expires_at}, handle)
        os.replace(partial, self.token_cache)

    def token(self, *, fresh: bool = False) -> str:
        if not fresh:
            cached = self._cached_token()
            if cached:
                return cached.value
        response = self._send("token request", lambda: self.session.post(
            self.base_url + TOKEN_PATH, timeout=self.timeout_s,
            data={"client_id": self.client_id, "client_secret": self._secret, "grant_type": "client_credentials"},
            headers={"Accept": "application/json"}))
        self.token_requests += 1
        if response.status_code != 200:
            raise ISpotApiError(f"iSpot token request refused ({response.status_code}): {_problem(response)}; "
                                "check ISPOT_CLIENT_ID / ISPOT_CLIENT_SECRET", response.status_code)
        try:
            body = response.json()
            token = _Token(body["access_token"], time.time() + float(body.get("expires_in", 86400)))
        except (ValueError, KeyError, TypeError):
            raise ISpotApiError("iSpot token response has no access_token", response.status_code) from None
        self._store_token(token)
        log.info("iSpot: new bearer token (valid %.0f h)", (token.expires_at - time.time()) / 3600)
        return token.value

    # --- transport with retries -----------------------------------------------------------------
    def _send(self, what: str, call: Callable[[], requests.Response]) -> requests.Response:
        import requests  # (see __init__)

        delay = self.backoff_s
        self.maybe_stored = False
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = call()
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem, wait = f"{type(exc).__name__}", delay
                self.maybe_stored = True
            else:
                if response.status_code not in RETRYABLE:
                    return response
                self.maybe_stored |= response.status_code in MAYBE_STORED
                problem = f"HTTP {response.status_code} {_problem(response)}"
                retry_after = response.headers.get("Retry-After", "")
                wait = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else delay
            if attempt == self.max_attempts:
                raise ISpotApiError(f"iSpot {what} failed after {attempt} attempts: {problem}")
            wait = min(wait, self.max_backoff_s)
            log.warning("iSpot %s: %s; retry %d/%d in %.1f s", what, problem, attempt, self.max_attempts - 1, wait)
            self.sleep(wait)
            delay = min(delay * 2, self.max_backoff_s)
        raise AssertionError("unreachable")

    # --- upload --------------------------------------------------------------------------------
    def upload(self, path: Path, name: str) -> str | None:
        """POST one file. Returns None on 201, or the note "accepted earlier" for a 409 that answers
        our own retry (an earlier try got a 500, a timeout or a dropped connection: iSpot stored the
        file and the answer was lost; DIGEST R4). Raises AlreadyExists on any other 409,
        ISpotRejected on 400, ISpotApiError otherwise."""
        refreshed = False
        while True:
            token = self.token(fresh=refreshed)

            def post() -> requests.Response:
                with open(path, "rb") as handle:
                    return self.session.post(
                        self.base_url + UPLOAD_PATH, timeout=self.timeout_s,
                        headers={"Authorization": f"Bearer {token}"},
                        files={UPLOAD_FIELD: (name, handle, "text/csv" if name.endswith(".csv") else "application/zip")})

            response = self._send(f"upload of {name}", post)
            status = response.status_code
            if status == 201:
                return None
            if status == 401 and not refreshed:
                refreshed = True  # the cached token was revoked or expired early: one fresh token
                continue
            if status == 409 and self.maybe_stored:
                return (f"accepted earlier: iSpot answered 409 to our retry of {name} after an earlier try "
                        "of the same upload failed without an answer")
            if status == 409:
                raise AlreadyExists(f"[ispot] iSpot already has a file named {name} (409: {_problem(response)})")
            if status == 400:
                raise ISpotRejected(f"[ispot] iSpot rejected {name} (400: {_problem(response)})", status)
            raise ISpotApiError(f"[ispot] upload of {name} failed ({status}: {_problem(response)})", status)


class ISpotUploader(Publisher):
    """Publishing through the upload API: write-only (see the module's docstring). A 409 for a name
    the ledger does not know is an error; `publish` never reads back, whatever `verify` says."""

    kind = "ispot-api"  # recorded in ledgers and receipts: keep it
    can_read_back = False

    def __init__(self, client: ISpotClient):
        super().__init__("ispot")
        self.client = client

    def publish(self, local_path: Path, name: str, *, verify: bool = True, md5: str | None = None,
                tag: str | None = None) -> Published:
        note = self.client.upload(Path(local_path), name)
        return Published(name=name, uri=self.uri(name), size=Path(local_path).stat().st_size,
                         md5=md5 or file_md5(local_path), note=note)

    def uri(self, name: str) -> str:
        return f"{self.client.base_url}{UPLOAD_PATH}#{name}"


class ISpotApiResource(dg.ConfigurableResource):
    """Credentials and endpoint of the upload API. Without a client id the files go to the
    vendor's destination (the local outbox by default) instead of the API."""

    base_url: str = "https://api.ispot.tv"
    client_id: Optional[str] = None
    client_secret: Optional[str] = None
    timeout_s: float = 120.0
    max_attempts: int = 5
    backoff_s: float = 2.0

    @property
    def configured(self) -> bool:
        return bool(self.client_id)

    def client(self) -> ISpotClient:
        return ISpotClient(self.base_url, self.client_id or "", self.client_secret or "", timeout_s=self.timeout_s,
                           max_attempts=self.max_attempts, backoff_s=self.backoff_s)

    def uploader(self) -> ISpotUploader:
        return ISpotUploader(self.client())


def ispot_api_from_env(environ: dict | None = None) -> ISpotApiResource:
    """`ISPOT_CLIENT_ID` / `ISPOT_CLIENT_SECRET` as EnvVars (read when a run starts), `ISPOT_API_BASE_URL`,
    `ISPOT_API_MAX_ATTEMPTS` and `ISPOT_API_BACKOFF_SECONDS` (retries within one upload)."""
    environ = os.environ if environ is None else environ
    kwargs: dict = {}
    if environ.get("ISPOT_API_BASE_URL"):
        kwargs["base_url"] = environ["ISPOT_API_BASE_URL"]
    if environ.get("ISPOT_API_MAX_ATTEMPTS"):
        kwargs["max_attempts"] = int(environ["ISPOT_API_MAX_ATTEMPTS"])
    if environ.get("ISPOT_API_BACKOFF_SECONDS"):
        kwargs["backoff_s"] = float(environ["ISPOT_API_BACKOFF_SECONDS"])
    if environ.get("ISPOT_CLIENT_ID"):
        kwargs["client_id"] = dg.EnvVar("ISPOT_CLIENT_ID")
        kwargs["client_secret"] = dg.EnvVar("ISPOT_CLIENT_SECRET")
    return ISpotApiResource(**kwargs)
