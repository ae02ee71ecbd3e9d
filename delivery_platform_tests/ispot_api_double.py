"""A local double of the iSpot.tv conversions API: a real HTTP server on 127.0.0.1.

It speaks the document's protocol and answers with its status codes and messages: the token
endpoint (form body, client credentials, 24 h bearer), the upload endpoint (bearer token,
multipart/form-data, field `upload[file]`, CSV header, 8 MB / 200 MB limits, 409 for a name it
already has). Faults can be queued for the next requests: a status (with Retry-After), a slow
answer, or a dropped connection.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

MESSAGES = {
    "created": "Uploaded. Our team will process your request soon! Thank you.",
    "content_type": "The content type request is not valid.",
    "no_csv": "The request must contain a CSV format file to be imported.",
    "not_csv": "The file cannot be processed because it is not in the required CSV file format.",
    "headers": "The content is not valid. Please validate the headers and content.",
    "too_small": "The file is too small. The minimum file size allowed is 8 MB.",
    "too_large": "The file is too large. The maximum file size allowed is 200 MB.",
    "unauthorized": "Unauthorized",
    "exists": "The file already exists.",
    "internal": "Internal error. Please contact our API team.",
}


@dataclass
class Received:
    name: str
    body: bytes
    content_type: str


@dataclass
class ISpotDouble:
    client_id: str = "89ab614c1732d98e123f"
    client_secret: str = "Tr1f3k6PzStGhQcWLuMAcKdXr4g4s6rUcHwyTSby"
    header: bytes = b"ip,datetime,siteid,app,type,customdata,useragent"
    min_bytes: int = 0  # the document says 8 MB; tests of small files lower it
    max_bytes: int = 200 * 1000 * 1000
    expires_in: int = 86400
    tokens: dict = field(default_factory=dict)  # token -> expiry
    received: dict = field(default_factory=dict)  # name -> Received
    token_requests: int = 0
    upload_requests: int = 0
    # ("status", code, retry_after) | ("slow", seconds) | ("drop",) | ("store_then", code): the upload is
    # stored, then answered with `code` (iSpot kept the file but the answer was lost)
    faults: list = field(default_factory=list)
    outage: bool = False  # every upload answers 500 until cleared
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, *faults) -> None:
        with self.lock:
            self.faults.extend(faults)

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def _take_fault(self):
        with self.lock:
            return self.faults.pop(0) if self.faults else None


def _handler(state: ISpotDouble):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        def _answer(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            problem = status >= 400
            self.send_header("Content-Type", "application/problem+json" if problem else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _problem(self, status: int, key: str, headers: dict | None = None) -> None:
            self._answer(status, {"title": MESSAGES[key], "status": status, "detail": MESSAGES[key]}, headers)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_POST(self):  # noqa: N802
            body = self._body()
            fault = state._take_fault()
            if fault and fault[0] == "store_then" and self.path != "/v4/metrics/conversions":
                with state.lock:  # meant for an upload: keep it for the next one
                    state.faults.insert(0, fault)
                fault = None
            if fault and fault[0] == "store_then":
                status = self._upload(body, answer=False)
                return self._problem(fault[1], "internal") if status == 201 else None
            if self.path == "/v4/metrics/conversions" and state.outage:
                return self._problem(500, "internal")
            if fault:
                kind = fault[0]
                if kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if kind == "slow":
                    time.sleep(fault[1])
                elif kind == "status":
                    retry = {"Retry-After": str(fault[2])} if len(fault) > 2 and fault[2] is not None else None
                    return self._problem(fault[1], "internal" if fault[1] >= 500 else "unauthorized", retry) \
                        if fault[1] != 429 else self._answer(429, {"title": "Too Many Requests"}, retry)
            if self.path == "/v4/oauth2/token":
                return self._token(body)
            if self.path == "/v4/metrics/conversions":
                return self._upload(body)
            self._answer(404, {"title": "Not Found"})

        def _token(self, body: bytes) -> None:
            with state.lock:
                state.token_requests += 1
            if "application/x-www-form-urlencoded" not in (self.headers.get("Content-Type") or ""):
                return self._problem(400, "content_type")
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if (form.get("grant_type") != "client_credentials" or form.get("client_id") != state.client_id
                    or form.get("client_secret") != state.client_secret):
                return self._problem(401, "unauthorized")
            token = secrets.token_urlsafe(48)
            with state.lock:
                state.tokens[token] = time.time() + state.expires_in
            self._answer(200, {"token_type": "Bearer", "expires_in": state.expires_in, "access_token": token})

        def _upload(self, body: bytes, answer: bool = True):
            with state.lock:
                state.upload_requests += 1
            auth = self.headers.get("Authorization") or ""
            token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
            if not token or state.tokens.get(token, 0) < time.time():
                return self._problem(401, "unauthorized")
            content_type = self.headers.get("Content-Type") or ""
            if not content_type.startswith("multipart/form-data"):
                return self._problem(400, "content_type")
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body)
            upload = next((p for p in message.iter_parts()
                           if p.get_param("name", header="content-disposition") == "upload[file]"), None)
            if upload is None or not upload.get_filename():
                return self._problem(400, "no_csv")
            name = upload.get_filename()
            data = upload.get_payload(decode=True) or b""
            if not (name.endswith(".csv") or name.endswith(".zip")):
                return self._problem(400, "not_csv")
            if name.endswith(".csv") and data.split(b"\n", 1)[0].rstrip(b"\r") != state.header:
                return self._problem(400, "headers")
            if len(data) < state.min_bytes:
                return self._problem(400, "too_small")
            if len(data) > state.max_bytes:
                return self._problem(400, "too_large")
            with state.lock:
                if name in state.received:
                    return self._problem(409, "exists")
                state.received[name] = Received(name, data, upload.get_content_type())
            if not answer:
                return 201
            self._answer(201, {"message": MESSAGES["created"]})

    return Handler


class ISpotApiServer:
    """`with ISpotApiServer() as api:` ... `api.url`, `api.state`."""

    def __init__(self, state: ISpotDouble | None = None):
        self.state = state or ISpotDouble()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "ISpotApiServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
