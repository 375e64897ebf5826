"""The rules of webhook delivery, pure and named: which URLs and addresses may be called (SSRF),
when to retry, when to give up, when an offer's count may be told again. Unit-tested by table."""
from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlsplit

EVENT_TYPES = ("offer.invited", "offer.intercepted", "offer.count_changed", "offer.closed")
URL_LENGTH = 2000
URL_SAFE = "!#$%&'()*+,/:;=?@[]~"  # and letters, digits, _ . - : so only space, non-ASCII and " < > \\ ^ ` { | } are encoded
MAX_BACKOFF = timedelta(hours=1)
COUNT_INTERVAL = timedelta(minutes=1)  # SPEC §11: offer.count_changed at most once a minute per offer
KINDS = (("loopback", "a loopback address"), ("link_local", "a link-local address"),
         ("unspecified", "an unspecified address"), ("multicast", "a multicast address"),
         ("private", "a private address"), ("reserved", "a reserved address"))
METADATA = ipaddress.ip_address("169.254.169.254")  # the cloud instance-metadata service


class Refused(Exception):
    """A webhook target we will not call; `code` is the problem's stable code."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written (lower-cased), for Host and TLS SNI
    port: int
    path: str  # path and query, what goes on the request line


def parse_target(url: str, allow_http: bool) -> Target:
    """The URL's parts, or Refused: https only (http when allowed), no credentials or fragment,
    port 80, 443 or an unprivileged one (1024+): never SSH, SMTP or the like on a host."""
    if not isinstance(url, str) or not url or len(url) > URL_LENGTH or not url.isprintable() or " " in url:
        raise Refused("webhook_url_invalid", f"The URL must be 1-{URL_LENGTH} printable characters without spaces.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("webhook_url_invalid", "The URL does not parse.") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme.lower() not in schemes:
        raise Refused("webhook_url_scheme", "Only https:// URLs are accepted.")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise Refused("webhook_url_invalid", "The URL may not carry credentials or a fragment.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise Refused("webhook_url_invalid", "The URL names no host.")
    scheme = parts.scheme.lower()
    port = port if port is not None else (443 if scheme == "https" else 80)
    if port not in (80, 443) and not 1024 <= port <= 65535:
        raise Refused("webhook_url_port", "The port must be 80, 443 or 1024-65535.")
    # the request line is ASCII: what the seller wrote beyond it is percent-encoded as UTF-8, as a
    # browser does (and what is encoded already stays as it is)
    path = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=URL_SAFE)
    return Target(scheme, host, port, path)


def refused_address(address: str) -> str | None:
    """Why an address may not be called (None: it may): anything not globally routable, which
    covers loopback, private, link-local (the metadata service), shared, reserved, multicast and
    their IPv6 forms, IPv4-mapped and 6to4 ones included, and IPv6 site-local."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:  # fec0::/10: deprecated, yet routed inside some sites (Python calls it global)
            return "a site-local address"
        # an IPv4 address inside an IPv6 one is judged as itself: ::ffff:a.b.c.d, and 6to4's 2002:ab:cd::
        # (which Python calls global, and a 6to4 relay or tunnel delivers to a.b.c.d)
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    if ip == METADATA:
        return "the metadata service"
    for kind, words in KINDS:
        if getattr(ip, f"is_{kind}"):
            return words
    if not ip.is_global:
        return "not a public address"
    return None


def backoff(failures: int, base_seconds: float, rng: random.Random | None = None) -> timedelta:
    """Delay before the next attempt after `failures` failed ones: base · 2^(failures-1), at most an
    hour, with "equal jitter" (half fixed, half random) so endpoints that failed together do not
    all come back at the same instant."""
    full = min(base_seconds * 2 ** max(failures - 1, 0), MAX_BACKOFF.total_seconds())
    return timedelta(seconds=full / 2 + (rng or random).uniform(0, full / 2))


def gives_up(first_planned: datetime, now: datetime, retry_for: timedelta) -> bool:
    """A delivery still failing `retry_for` after it was planned fails for good."""
    return now - first_planned >= retry_for


def endpoint_disabled(failing_since: datetime | None, now: datetime, retry_for: timedelta) -> bool:
    """An endpoint that has not answered a 2xx for `retry_for` is disabled (its seller told)."""
    return failing_since is not None and now - failing_since >= retry_for


def count_may_be_told(last_told: datetime | None, now: datetime) -> bool:
    return last_told is None or now - last_told >= COUNT_INTERVAL


def succeeded(status: int | None) -> bool:
    """Standard Webhooks: any 2xx is a success; a redirect is not followed, so it is a failure."""
    return status is not None and 200 <= status < 300
