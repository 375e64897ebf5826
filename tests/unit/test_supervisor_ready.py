"""`cobuy up` waits for the gateway to answer ready: whatever answers on the port before it does
(nothing, or something that is not HTTP) is "not yet", never a crash of the whole stack."""
from __future__ import annotations

import socket
import threading

from cobuy.supervisor import _ready


def _serve_once(answer) -> int:
    """A listener on a free port that reads one request and answers it with answer(request)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        connection, _ = listener.accept()
        with connection, listener:
            request = connection.recv(65536)
            connection.sendall(answer(request))

    threading.Thread(target=serve, daemon=True).start()
    return port


def test_a_peer_that_echoes_the_request_is_not_ready_and_raises_nothing():
    """What a loopback connection made from the gateway's own port reads: its request, echoed
    (BadStatusLine "GET /readyz?services=all HTTP/1.1", which once stopped `cobuy up` in CI)."""
    port = _serve_once(lambda request: request)
    assert _ready(f"http://127.0.0.1:{port}/readyz?services=all") is False


def test_nothing_listening_is_not_ready_and_a_200_is():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    assert _ready(f"http://127.0.0.1:{port}/readyz") is False
    port = _serve_once(lambda _request: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    assert _ready(f"http://127.0.0.1:{port}/readyz") is True
