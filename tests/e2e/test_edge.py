"""The gateway's edge (SPEC §7): what a client sends in a path or a header can neither reach an
internal route, nor name an internal address, nor stop an event, nor share or dodge a rate limit.

Raw request targets go through http.client or a socket: `requests` would resolve the dot segments
before sending them."""
from __future__ import annotations

import http.client
import json
import re
import socket

import pytest

from tests.conftest import own_system
from tests.support import Cobuy, unique_email

VALID_CORRELATION = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def raw_request(port: int, method: str, target: str, body: dict | None = None, headers: dict | None = None,
                source: str = "127.0.0.1") -> tuple[int, dict, bytes]:
    """One request with the target exactly as written; (status, lower-cased headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        payload = json.dumps(body) if body is not None else None
        connection.request(method, target, payload, {"Content-Type": "application/json", **(headers or {})})
        reply = connection.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        connection.close()


def raw_bytes(port: int, request: bytes) -> bytes:
    """A request written byte by byte (header values http.client would refuse); the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.fixture
def seller_and_offer(cobuy):
    seller = cobuy.register_seller()
    return seller, cobuy.create_offer(seller)


# -- headers that travel ---------------------------------------------------------------------------

@pytest.mark.parametrize("sent", ["x" * 300, "y" * 65, "two words", "semi;colon", "caf\u00e9", "a/b"],
                         ids=["300-chars", "65-chars", "space", "semicolon", "non-ascii", "slash"])
def test_a_correlation_id_that_is_too_long_or_strange_is_replaced_by_a_fresh_one(cobuy, sent):
    reply = cobuy.get("/api/v1/offers", headers={"X-Correlation-Id": sent.encode("utf-8")})
    assert reply.status_code == 200
    answered = reply.headers["X-Correlation-Id"]
    assert answered != sent and VALID_CORRELATION.match(answered)


def test_a_correlation_id_of_64_safe_characters_is_kept(cobuy):
    sent = "Abc.def_ghi:jkl-" * 4
    assert cobuy.get("/api/v1/offers", headers={"X-Correlation-Id": sent}).headers["X-Correlation-Id"] == sent


def test_a_service_behind_the_gateway_replaces_an_invalid_correlation_id_too(system):
    catalog = system.config().service_port("catalog")
    status, headers, _ = raw_request(catalog, "GET", "/healthz", headers={"X-Correlation-Id": "z" * 300})
    assert status == 200 and VALID_CORRELATION.match(headers["x-correlation-id"])


def test_a_300_character_correlation_id_does_not_stop_the_reservations_after_it(cobuy, seller_and_offer, mailbox):
    _, offer = seller_and_offer
    poisoned = cobuy.reserve(offer["id"], headers={"X-Correlation-Id": "p" * 300})
    assert poisoned.status_code == 201, poisoned.text
    after = cobuy.reserve(offer["id"], email=unique_email("after"))
    assert after.status_code == 201
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 2, timeout=20,
                     what="both reservations counted by catalog")


# -- routing ---------------------------------------------------------------------------------------

INTERNAL_SPELLINGS = ["//internal/auth", "/%2Finternal/auth", "/%2finternal/auth", "/x/../internal/auth",
                      "/./internal/auth", "/Internal/auth", "/INTERNAL/auth", "/%69nternal/auth",
                      "/x/%2e%2e/internal/auth", "/%2e/internal/auth", "/x/..%2Finternal/auth",
                      "///internal//auth", "/api/v1/offers/../../../internal/auth"]


@pytest.mark.parametrize("target", INTERNAL_SPELLINGS)
def test_no_spelling_of_an_internal_path_reaches_the_api_key_check(cobuy, system, seller_and_offer, target):
    seller, _ = seller_and_offer
    status, _, body = raw_request(system.port, "POST", target, {"api_key": seller["api_key"]})
    assert status in (400, 404), body
    assert seller["email"].encode() not in body


@pytest.mark.parametrize("template", ["//internal/offers/{id}", "/x/../internal/offers/{id}",
                                      "/%2Finternal/offers/{id}", "/Internal/offers/{id}",
                                      "/offers/%2e%2e/internal/offers/{id}"])
def test_no_spelling_of_an_internal_path_reveals_a_sellers_email(system, seller_and_offer, template):
    seller, offer = seller_and_offer
    status, _, body = raw_request(system.port, "GET", template.format(id=offer["id"]))
    assert status in (400, 404), body
    assert seller["email"].encode() not in body


@pytest.mark.parametrize("target", ["/api/v1/reservations/../../../metrics", "/api/v1/offers/%2e%2e/%2e%2e/%2e%2e/metrics",
                                    "/offers/../readyz", "//metrics"])
def test_dot_segments_do_not_reach_a_services_metrics_or_health(system, target):
    status, _, body = raw_request(system.port, "GET", target)
    assert status in (400, 404), body
    assert b"cobuy_reservations_total" not in body and b"cobuy_offers" not in body


def test_the_gateway_forwards_the_normalised_path_it_checked(cobuy, system, seller_and_offer):
    _, offer = seller_and_offer
    status, _, body = raw_request(system.port, "GET", f"/api/v1/x/../offers/./{offer['id']}")
    assert status == 200 and json.loads(body)["id"] == offer["id"]


@pytest.mark.parametrize("target", ["/a%zz", "/%00", "/%ff%fe", "/..", "/a/../../b"])
def test_a_path_that_does_not_normalise_cleanly_is_a_4xx_problem(system, target):
    status, headers, _ = raw_request(system.port, "GET", target)
    assert status in (400, 404)
    assert headers["content-type"].startswith("application/problem+json")


# -- redirects -------------------------------------------------------------------------------------

@pytest.mark.parametrize("template", ["/offers//{id}", "//offers/{id}", "/api/v1/offers//{id}"])
def test_no_answer_names_an_internal_address(system, seller_and_offer, template):
    _, offer = seller_and_offer
    status, headers, _ = raw_request(system.port, "GET", template.format(id=offer["id"]))
    assert status < 500
    internal = [f":{system.config().service_port(s)}" for s in ("catalog", "reservation", "auction", "mailer")]
    for name in ("location", "content-location"):
        assert not any(port in headers.get(name, "") for port in internal), headers


# -- bad input is 4xx, never 5xx -------------------------------------------------------------------

@pytest.mark.parametrize("page", ["99999999999999999999", "9223372036854775807", "100001", "-5", "0", "abc"])
def test_an_absurd_page_number_on_the_home_page_is_not_a_server_error(cobuy, page):
    assert cobuy.get(f"/?page={page}").status_code in (200, 400, 404, 422)


@pytest.mark.parametrize("page", ["99999999999999999999", "9223372036854775807", "100001", "-5"])
def test_an_absurd_page_number_in_the_api_is_a_422(cobuy, page):
    reply = cobuy.get(f"/api/v1/offers?page={page}")
    assert reply.status_code == 422 and reply.json()["code"] == "validation_failed"


def test_a_10_kib_header_is_a_4xx_and_the_gateway_keeps_answering(cobuy, system):
    answer = raw_bytes(system.port, b"GET /api/v1/offers HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10240
                       + b"\r\nConnection: close\r\n\r\n")
    assert 400 <= status_of(answer) < 500
    assert cobuy.get("/api/v1/offers").status_code == 200


@pytest.mark.parametrize("value", [b"caf\xe9", b"\xff\xfe\xfd", "caf\u00e9".encode("utf-8"), b"x" * 8000, b"a\x01b",
                                   b"a\x7fb", b"a\tb"])
@pytest.mark.parametrize("name", [b"X-Anything", b"Authorization", b"X-Correlation-Id", b"Cookie"])
def test_strange_header_bytes_are_a_4xx_or_handled_never_a_500(cobuy, system, name, value):
    answer = raw_bytes(system.port, b"GET /api/v1/offers HTTP/1.1\r\nHost: x\r\n" + name + b": " + value
                       + b"\r\nConnection: close\r\n\r\n")
    assert status_of(answer) < 500, answer[:300]
    assert cobuy.get("/api/v1/offers").status_code == 200


def test_a_lowercase_authorization_header_authenticates_and_a_bad_one_is_refused(cobuy, seller_and_offer):
    seller, _ = seller_and_offer
    assert cobuy.get("/api/v1/sellers/me", headers={"authorization": f"Bearer {seller['api_key']}"}).json()["id"] \
        == seller["id"]
    assert cobuy.get("/api/v1/sellers/me", headers={"authorization": "Bearer nope"}).status_code == 401


def test_a_client_sent_identity_header_in_any_case_is_ignored(cobuy, system, seller_and_offer):
    seller, _ = seller_and_offer
    from shared import identity
    forged = identity.sign(system.config().internal_secret, {"id": seller["id"], "name": "x", "email": "x@y.z"})
    for name in ("X-Cobuy-Identity", "x-cobuy-identity", "X-COBUY-IDENTITY"):
        assert cobuy.get("/api/v1/sellers/me", headers={name: forged}).status_code == 401


# -- clients behind proxies ------------------------------------------------------------------------

@pytest.fixture
def proxied_system(servers, mailbox, output_dir, tmp_path):
    with own_system(servers, mailbox, tmp_path, output_dir / "cobuy-up-proxied.log", [],
                    COBUY_RATE_LIMIT="registrations=3/minute", COBUY_TRUSTED_PROXIES="127.0.0.1/32") as running:
        yield running


def test_clients_behind_a_trusted_proxy_have_buckets_of_their_own_and_an_untrusted_peer_cannot_spoof_one(
        proxied_system):
    port = proxied_system.port

    def register(forwarded_for: str | None, source: str = "127.0.0.1") -> int:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        return raw_request(port, "POST", "/api/v1/sellers", {"name": "S", "email": unique_email()}, headers,
                           source)[0]

    # the trusted proxy (127.0.0.1) appends each client: the right-most untrusted entry is the client
    assert [register("198.51.100.7, 203.0.113.1") for _ in range(4)] == [201, 201, 201, 429]
    assert [register(f"10.9.9.{i}, 203.0.113.2") for i in range(4)] == [201, 201, 201, 429]
    # a peer that is not trusted is the client, whatever it claims to forward
    assert [register(f"203.0.113.{50 + i}", source="127.0.0.2") for i in range(4)] == [201, 201, 201, 429]
    # and an entry that is not an address falls back to the trusted proxy itself
    assert [register("not-an-address") for _ in range(4)] == [201, 201, 201, 429]
    assert Cobuy(proxied_system.base_url).get("/api/v1/offers").status_code == 200


@pytest.mark.parametrize("header", [b"Authorization: Bearer %s\x01", b"Authorization: Bearer %s" + b"k" * 9000,
                                    b"X-Cancel-Token: %s\x7f"])
def test_a_malformed_header_with_a_secret_is_refused_without_logging_the_secret(system, header, run_id):
    secret = f"secret-{run_id}".encode()
    answer = raw_bytes(system.port, b"GET /api/v1/offers HTTP/1.1\r\nHost: x\r\n" + header.replace(b"%s", secret)
                       + b"\r\nConnection: close\r\n\r\n")
    assert status_of(answer) == 400
    status, _, _ = raw_request(system.port, "GET", f"/api/v1/offers?after={run_id}")  # a request logged after it
    assert status == 200
    assert secret not in system.log_path.read_bytes()
