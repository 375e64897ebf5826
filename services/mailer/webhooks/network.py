"""Calling a seller's endpoint without being turned against ourselves (SSRF).

The host is resolved and every address it resolves to is checked (rules.refused_address) at
registration and again at each delivery; the request then goes to the very address that was
checked, so a DNS answer changed in between (rebinding) cannot point it elsewhere. TLS still
verifies the certificate against the host name. Redirects are not followed (http.client never
does), and at most RESPONSE_CAP bytes of an answer are read.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from .rules import Refused, Target, parse_target, refused_address

RESPONSE_CAP = 1024  # what the delivery log keeps of an answer, and all we ever read of it


@dataclass(frozen=True)
class Answer:
    status: int | None
    body: bytes
    error: str | None
    seconds: float


def resolve(target: Target, allow_private: bool) -> str:
    """The address to connect to; Refused when the host does not resolve or any of its addresses
    is not one we may call."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise Refused("webhook_url_unresolvable", "The URL's host does not resolve.") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise Refused("webhook_url_unresolvable", "The URL's host does not resolve.")
    if not allow_private:
        for address in addresses:
            reason = refused_address(address)
            if reason:
                raise Refused("webhook_url_forbidden", f"The URL's host resolves to {reason}.")
    return addresses[0]


def checked(url: str, allow_http: bool, allow_private: bool) -> tuple[Target, str]:
    target = parse_target(url, allow_http)
    return target, resolve(target, allow_private)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, allow_http: bool,
         allow_private: bool) -> Answer:
    """One attempt: never raises; a refused target, a time-out or a reset is an Answer with an error."""
    started = time.monotonic()
    deadline = started + timeout * 2  # connect and send, then the answer

    def answer(status=None, data=b"", error=None) -> Answer:
        return Answer(status, data, error, time.monotonic() - started)

    try:
        target, address = checked(url, allow_http, allow_private)
    except Refused as exc:
        return answer(error=exc.detail)
    connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    sock: socket.socket | None = None
    # The socket time-out bounds each read, not their sum: an endpoint dripping a byte at a time
    # would hold the attempt (and its thread) for ever. The watchdog cuts it at the deadline.
    cut = threading.Event()
    watchdog = threading.Timer(timeout * 2, lambda: _cut(sock, cut))
    try:
        sock = socket.create_connection((address, target.port), timeout=timeout)
        watchdog.start()
        if target.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        connection.sock = sock
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        data = b""
        while len(data) < RESPONSE_CAP and time.monotonic() < deadline:
            chunk = response.read1(RESPONSE_CAP - len(data))
            if not chunk:
                break
            data += chunk
        if cut.is_set():  # what was read so far may look whole: an answer cut short is no answer
            return answer(error=f"no complete answer within {timeout * 2:g} s")
        return answer(response.status, data)
    except (OSError, http.client.HTTPException, ssl.SSLError, ValueError) as exc:  # ValueError: a header http.client refuses
        if cut.is_set():
            return answer(error=f"no complete answer within {timeout * 2:g} s")
        return answer(error=f"{type(exc).__name__}: {exc}"[:200])
    finally:
        watchdog.cancel()
        connection.close()


def _cut(sock: socket.socket | None, cut: threading.Event) -> None:
    cut.set()
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
