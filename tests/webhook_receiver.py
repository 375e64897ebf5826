"""A seller's system on loopback, for the webhook tests and the bench: records what arrives, and
answers per path as scripted (statuses in turn, or hanging)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


@dataclass
class Arrival:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival

    @property
    def document(self) -> dict:
        return json.loads(self.body)

    def verified(self, secret: str) -> dict:
        """The document, if the reference library accepts its signature (raises otherwise)."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class Script:
    statuses: list[int] = field(default_factory=list)  # answered in turn; then `then`
    then: int = 200
    hang_seconds: float = 0.0
    body: bytes = b"ok"
    drip: bool = False  # the status line, then one header byte a second until released
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    def __init__(self):
        self.arrivals: list[Arrival] = []
        self.scripts: dict[str, Script] = {}
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends every hang at once
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.arrivals.append(Arrival(self.path, dict(self.headers), body, time.time()))
                    script = receiver.scripts.setdefault(self.path, Script())
                    status = script.statuses.pop(0) if script.statuses else script.then
                if script.hang_seconds:
                    receiver.release.wait(script.hang_seconds)
                try:
                    if script.drip:
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                        while not receiver.release.wait(0.5):
                            self.wfile.write(b"a")
                            self.wfile.flush()
                        return
                    self.send_response(status)
                    for name, value in {"Content-Length": str(len(script.body)), **script.headers}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(script.body)
                except OSError:
                    pass  # the caller gave up on us

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str, event_type: str | None = None) -> list[Arrival]:
        with self.lock:
            found = [a for a in self.arrivals if a.path == path]
        return [a for a in found if event_type is None or a.document["type"] == event_type]
