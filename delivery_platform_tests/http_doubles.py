"""Local HTTP doubles that record what they receive: a generic webhook and Slack's Web API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class Recorder:
    """`with Recorder() as hook:` ... `hook.url`, `hook.requests` (path, headers, body)."""

    def __init__(self, answer: dict | None = None, script: list[tuple[int, dict]] | None = None):
        """`script`: (status, headers) answers for the first requests (e.g. a 429 with Retry-After);
        every request after them gets 200 with `answer`. Every request is recorded."""
        self.requests: list[tuple[str, dict, bytes]] = []
        self.script = list(script or [])
        answer = answer or {"ok": True}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append((self.path, dict(self.headers), body))
                status, headers = recorder.script.pop(0) if recorder.script else (200, {})
                data = json.dumps(answer if status == 200 else {"ok": False, "error": "ratelimited"}).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def slack_texts(self) -> list[str]:
        out = []
        for path, headers, body in self.requests:
            if path.endswith("chat.postMessage"):
                text = body.decode()
                out.append(json.loads(text)["text"] if text.startswith("{") else parse_qs(text)["text"][0])
        return out

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
