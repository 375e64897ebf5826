"""What the gateway decides about a client's request before anything is forwarded (SPEC §7).

Pure functions, unit-tested by table: the path is normalised once and the same normalised path is
both routed and sent upstream, so what is checked is what is sent."""
from __future__ import annotations

import ipaddress
import re
from typing import Iterable, Sequence
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from shared.config import IPNetwork
from shared.http import CONTROL_CHARACTER

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PCHAR = "!$&'()*+,;=:@-._~"  # RFC 3986 pchar besides unreserved letters and digits


def normalise_path(raw: str) -> str | None:
    """The percent-decoded path with empty, '.' and '..' segments resolved, or None when it does
    not normalise cleanly: a bad escape, invalid UTF-8, an encoded slash or backslash, a control
    character, or a '..' that climbs above the root."""
    if not raw.startswith("/") or _BAD_ESCAPE.search(raw):
        return None
    raw_segments = raw.split("/")[1:]
    segments: list[str] = []
    for raw_segment in raw_segments:
        try:
            segment = unquote(raw_segment, errors="strict")
        except UnicodeDecodeError:
            return None
        if "/" in segment or "\\" in segment or CONTROL_CHARACTER.search(segment):
            return None
        if segment == "..":
            if not segments:
                return None
            segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    trailing = bool(segments) and unquote(raw_segments[-1]) in ("", ".", "..")
    return "/" + "/".join(segments) + ("/" if trailing else "")


def upstream_target(path: str, raw_query: str) -> str:
    """The request target sent upstream: the normalised path, re-encoded, and the client's query."""
    encoded = "/".join(quote(segment, safe=_PCHAR) for segment in path.split("/"))
    return encoded + (f"?{raw_query}" if raw_query else "")


# -- redirects ---------------------------------------------------------------------------------------

def _origin(url: str) -> tuple[str, str, int | None] | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def public_location(location: str, internal_urls: Iterable[str]) -> str:
    """A Location that names a service's internal address, made relative (it then resolves against
    whatever address the client used); any other Location is left as it is."""
    origin = _origin(location)
    if origin is None or origin not in {_origin(url) for url in internal_urls}:
        return location
    parts = urlsplit(location)
    return urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))


# -- headers -----------------------------------------------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length"}
# Set by the gateway alone: a client's value is never passed on, whatever its case or spelling.
GATEWAY_ONLY = {"authorization", "forwarded", "x-real-ip", "x-correlation-id"}
GATEWAY_ONLY_PREFIXES = ("x-forwarded-", "x-cobuy-")
_NOT_FORWARDED = frozenset(HOP_BY_HOP | GATEWAY_ONLY)


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def forwardable_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The client's headers that may travel upstream, in order (repeated names kept)."""
    headers = list(headers)
    named_by_connection = {_canonical(token) for name, value in headers if _canonical(name) == "connection"
                           for token in value.split(",")}
    dropped = _NOT_FORWARDED | named_by_connection  # once, not once per header
    return [(name, value) for name, value in headers
            if (canonical := _canonical(name)) not in dropped and not canonical.startswith(GATEWAY_ONLY_PREFIXES)]


_UNFORWARDABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f\udc80-\udcff]")


def unforwardable(value: str) -> bool:
    """True for a header value that cannot be written upstream as it came: a control character, or
    bytes that were not UTF-8 (aiohttp keeps those as surrogates)."""
    return _UNFORWARDABLE.search(value) is not None


# -- the client's address ----------------------------------------------------------------------------

def parse_address(text: str | None) -> IPAddress | None:
    """An address as proxies write it (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`), or None."""
    text = (text or "").strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]) -> str:
    """The client for rate limits: the peer, unless the peer is a trusted proxy; then the right-most
    X-Forwarded-For entry that is not a trusted proxy. Entries left of it are the client's own words.
    An entry that is not an address stops the walk at the last trusted proxy seen."""
    client = parse_address(peer)
    if client is None:
        return ""
    if not _trusted(client, trusted):
        return str(client)
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break
        client = address
        if not _trusted(address, trusted):
            break
    return str(client)
