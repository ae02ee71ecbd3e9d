"""An HTTP proxy on 127.0.0.1 in front of a real storage server that injects faults into the next
N requests: error statuses (500, 503, 429 with Retry-After), a connection dropped after the request
arrived, or ("slow", s): the answer held back s seconds (the request still reaches the server, as
when a slow server finishes the work after the client gave up)."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}


class FaultProxy:
    def __init__(self, upstream: str):
        target = urlsplit(upstream)
        self.host, self.port = target.hostname, target.port
        self.faults: list = []
        self.hang_paths: list[str] = []  # requests whose path contains one of these never get an answer
        self.released = threading.Event()
        self.seen = 0
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) of each forwarded request
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.seen += 1
                    fault = proxy._take(self.command)
                    if any(part in self.path for part in proxy.hang_paths):
                        fault = "hang"
                if fault == "hang":  # held until the proxy closes, then dropped: never reaches the server
                    proxy.released.wait()
                    fault = "drop"
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if isinstance(fault, int) or isinstance(fault, tuple) and isinstance(fault[0], int):
                    fault, code = fault if isinstance(fault, tuple) else (fault, "InternalError")
                    data = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                    self.send_response(fault)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Content-Type", "application/xml")
                    if fault == 429:
                        self.send_header("Retry-After", "1")
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if isinstance(fault, tuple) and fault[0] == "slow":
                    time.sleep(fault[1])
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                with proxy.lock:
                    proxy.requests.append((self.command, self.path, answer.status))
                self.send_response(answer.status, answer.reason)
                for k, v in answer.getheaders():
                    if k.lower() not in HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                        self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except OSError:  # the client gave up (timeout) while we held the answer back
                    self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _take(self, method: str):
        """The next fault for this request; a ("slow", s) fault waits for an upload (PUT/POST), so
        a client's side request (a HEAD, a GET) cannot use it up."""
        for i, fault in enumerate(self.faults):
            if isinstance(fault, tuple) and fault[0] == "slow" and method not in ("PUT", "POST"):
                continue
            return self.faults.pop(i)
        return None

    def fail_next(self, *faults) -> None:
        """Faults for the next requests, in order: 500, (503, "SlowDown"), 429, "drop", ("slow", 3.0)."""
        with self.lock:
            self.faults.extend(faults)

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class TcpFaultProxy:
    """A TCP relay on 127.0.0.1 in front of a server speaking any protocol (here SFTP over SSH).

    `cut_after(n)`: the next connection carrying n more bytes from the client is closed on both
    sides (a connection dropped mid-upload). `stall(s)`: the next connection carrying more client
    bytes stops relaying for s seconds (a server that stops answering). Each fault fires once.
    """

    def __init__(self, port: int):
        self.upstream = port
        self.cuts: list[int] = []
        self.stalls: list[float] = []
        self.fired: list[str] = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, n: int) -> None:
        with self.lock:
            self.cuts.append(n)

    def stall(self, seconds: float) -> None:
        with self.lock:
            self.stalls.append(seconds)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upload: bool) -> None:
        budget = None
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upload:
                    with self.lock:
                        if budget is None and self.cuts:
                            budget = self.cuts.pop(0)
                        pause = self.stalls.pop(0) if self.stalls else 0
                    if pause:
                        self.fired.append(f"stall {pause}")
                        time.sleep(pause)
                    if budget is not None:
                        budget -= len(data)
                        if budget <= 0:
                            self.fired.append("cut")
                            break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()
