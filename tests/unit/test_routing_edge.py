"""The gateway's edge decisions, by table: path normalising, routing, redirects, headers, client address."""
from __future__ import annotations

import pytest

from gateway.edge import (client_address, forwardable_headers, normalise_path, parse_address, public_location,
                          unforwardable, upstream_target)
from gateway.routing import route_label, service_for
from shared.config import trusted_networks
from shared.http import accepted_correlation_id


@pytest.mark.parametrize("raw, normalised", [
    ("/", "/"),
    ("/api/v1/offers", "/api/v1/offers"),
    ("/api/v1/offers/", "/api/v1/offers/"),
    ("//internal/auth", "/internal/auth"),
    ("///offers//abc", "/offers/abc"),
    ("/./internal", "/internal"),
    ("/x/../internal/auth", "/internal/auth"),
    ("/x/%2e%2e/internal", "/internal"),
    ("/x/%2E%2E/internal", "/internal"),
    ("/%2e/internal", "/internal"),
    ("/%69nternal/auth", "/internal/auth"),
    ("/api/v1/reservations/../../../metrics", "/metrics"),
    ("/a/b/..", "/a/"),
    ("/a/.", "/a/"),
    ("/offers/caf%C3%A9", "/offers/caf\u00e9"),
    ("/offers/a%20b", "/offers/a b"),
    ("/offers/%25", "/offers/%"),
])
def test_a_path_is_decoded_and_its_dot_and_empty_segments_resolved(raw, normalised):
    assert normalise_path(raw) == normalised


@pytest.mark.parametrize("raw", [
    "/%2Finternal/auth", "/%2finternal", "/x/..%2Finternal", "/a%5Cb", "/a%zz", "/a%", "/a%2",
    "/%00", "/a%0d%0aX: y", "/%ff%fe", "/..", "/a/../..", "/%2e%2e", "internal", "http://evil/internal", "",
])
def test_a_path_that_does_not_normalise_cleanly_is_refused(raw):
    assert normalise_path(raw) is None


@pytest.mark.parametrize("raw", ["/a/./b/../c//d", "/offers/caf%C3%A9/", "/x%20y/%2e", "/api/v1/offers/%41bc"])
def test_the_target_sent_upstream_normalises_to_the_path_that_was_routed(raw):
    path = normalise_path(raw)
    target = upstream_target(path, "")
    assert normalise_path(target) == path and "/." not in target and "//" not in target


def test_the_upstream_target_keeps_the_clients_query_as_sent():
    assert upstream_target("/offers/a b", "page=2&x=%2F") == "/offers/a%20b?page=2&x=%2F"


@pytest.mark.parametrize("path", ["/internal/auth", "/Internal/auth", "/INTERNAL/offers/x", "/internal",
                                  "/metrics", "/healthz", "/readyz", "/Metrics"])
def test_no_case_of_an_internal_or_the_gateways_own_path_is_forwarded(path):
    assert service_for(path) is None


def test_the_metrics_label_of_a_path_that_did_not_normalise_is_unrouted():
    assert route_label(None) == "unrouted"
    assert route_label("/api/v1/offers") == "catalog:api"


def test_the_live_streams_have_their_own_metrics_label():
    assert route_label("/api/v1/offers/stream") == route_label("/api/v1/offers/ab-12/stream") == "gateway:stream"


# -- redirects -----------------------------------------------------------------------------------------

SERVICES = ["http://127.0.0.1:8081", "http://catalog:80", "https://reservation.internal:8443"]


@pytest.mark.parametrize("location, public", [
    ("http://127.0.0.1:8081/offers/abc", "/offers/abc"),
    ("http://127.0.0.1:8081/offers/abc?x=1#top", "/offers/abc?x=1#top"),
    ("http://127.0.0.1:8081", "/"),
    ("HTTP://CATALOG/offers/x", "/offers/x"),
    ("http://catalog:80/offers/x", "/offers/x"),
    ("https://reservation.internal:8443/r", "/r"),
    ("/offers/abc", "/offers/abc"),
    ("https://example.com/elsewhere", "https://example.com/elsewhere"),
    ("http://127.0.0.1:8080/offers/abc", "http://127.0.0.1:8080/offers/abc"),
    ("http://127.0.0.1:bad/x", "http://127.0.0.1:bad/x"),
])
def test_a_redirect_to_a_services_internal_address_is_made_relative(location, public):
    assert public_location(location, SERVICES) == public


# -- headers -------------------------------------------------------------------------------------------

def test_only_the_headers_a_client_may_set_travel_upstream():
    sent = [("Accept", "text/html"), ("authorization", "Bearer k"), ("AUTHORIZATION", "Bearer k"),
            ("x-cobuy-identity", "forged"), ("X_Cobuy_Identity", "forged"), ("X-Forwarded-For", "1.2.3.4"),
            ("x-forwarded-proto", "https"), ("Forwarded", "for=1.2.3.4"), ("X-Real-IP", "1.2.3.4"),
            ("x-correlation-id", "c"), ("Connection", "keep-alive, X-Secret"), ("X-Secret", "s"),
            ("Transfer-Encoding", "chunked"), ("Host", "evil"), ("Cookie", "a=1"), ("Cookie", "b=2"),
            ("Idempotency-Key", "k1"), ("X-Cancel-Token", "t")]
    assert forwardable_headers(sent) == [("Accept", "text/html"), ("Cookie", "a=1"), ("Cookie", "b=2"),
                                         ("Idempotency-Key", "k1"), ("X-Cancel-Token", "t")]


@pytest.mark.parametrize("value, bad", [("caf\u00e9", False), ("plain", False), ("caf\udce9", True),
                                        ("a\x01b", True), ("a\x7fb", True), ("a\tb", False)])
def test_a_header_value_that_cannot_travel_is_recognised(value, bad):
    assert unforwardable(value) is bad


@pytest.mark.parametrize("sent, kept", [
    ("abc-123", True), ("Abc.def_ghi:jkl-" * 4, True), ("x" * 64, True), ("x" * 65, False), ("x" * 300, False),
    ("", False), (None, False), ("two words", False), ("caf\u00e9", False), ("a/b", False), ("a\r\nb", False),
])
def test_a_correlation_id_is_kept_only_when_it_is_1_to_64_safe_characters(sent, kept):
    answered = accepted_correlation_id(sent)
    assert (answered == sent) is kept
    assert 1 <= len(answered) <= 64


# -- the client's address ------------------------------------------------------------------------------

PROXIES = trusted_networks("10.0.0.0/8, 192.168.1.1, ::1")


@pytest.mark.parametrize("peer, forwarded, client", [
    ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # an untrusted peer is the client, whatever it claims
    ("10.0.0.5", [], "10.0.0.5"),  # a trusted proxy that forwards nobody
    ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.5", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # the client's own entries are left of it
    ("10.0.0.5", ["6.6.6.6, 198.51.100.1, 10.1.1.1"], "198.51.100.1"),  # two trusted hops
    ("10.0.0.5", ["6.6.6.6", "198.51.100.1, 192.168.1.1"], "198.51.100.1"),  # repeated headers, in order
    ("10.0.0.5", ["10.2.2.2, 10.3.3.3"], "10.2.2.2"),  # all trusted: the left-most
    ("10.0.0.5", ["6.6.6.6, garbage"], "10.0.0.5"),  # not an address: the last trusted hop
    ("10.0.0.5", ["198.51.100.1:4567"], "198.51.100.1"),
    ("10.0.0.5", ["[2001:db8::1]:443"], "2001:db8::1"),
    ("::1", ["2001:db8::2"], "2001:db8::2"),
    ("::ffff:10.0.0.5", ["198.51.100.3"], "198.51.100.3"),  # an IPv4 peer seen on an IPv6 socket
    (None, ["198.51.100.1"], ""),
])
def test_the_client_is_the_right_most_forwarded_entry_that_is_not_a_trusted_proxy(peer, forwarded, client):
    assert client_address(peer, forwarded, PROXIES) == client


def test_with_no_trusted_proxies_the_peer_is_always_the_client():
    assert client_address("127.0.0.1", ["198.51.100.1"], trusted_networks(None)) == "127.0.0.1"


@pytest.mark.parametrize("text, address", [("1.2.3.4", "1.2.3.4"), (" 1.2.3.4:80 ", "1.2.3.4"), ("::1", "::1"),
                                           ("[::1]:8080", "::1"), ("unknown", None), ("", None), ("1.2.3", None)])
def test_proxy_written_addresses_are_read(text, address):
    parsed = parse_address(text)
    assert (str(parsed) if parsed else None) == address


@pytest.mark.parametrize("text", ["10.0.0.0/33", "nope", "10.0.0.1/8/1"])
def test_a_trusted_proxy_that_is_not_a_cidr_stops_start_up(text):
    with pytest.raises(ValueError, match="COBUY_TRUSTED_PROXIES"):
        trusted_networks(text)
