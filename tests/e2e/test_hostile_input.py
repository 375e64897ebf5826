"""Hostile input through the gateway: no request crashes a service or lets anyone act as someone else."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT, unique_email

SCHEMATHESIS = [sys.executable, "-m", "schemathesis.cli", "run"]


@pytest.mark.parametrize("with_key", [True, False], ids=["seller", "anonymous"])
def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(cobuy, system, with_key, output_dir):
    headers = []
    if with_key:
        headers = ["-H", f"Authorization: Bearer {cobuy.register_seller(name='Fuzzer')['api_key']}"]
    har = output_dir / f"schemathesis-{'seller' if with_key else 'anonymous'}.har"
    result = subprocess.run(
        SCHEMATHESIS + [f"{system.base_url}/api/v1/openapi.json", "-u", system.base_url,
                        "-c", "not_a_server_error,response_schema_conformance", "-n", "25", "--seed", "7",
                        "--request-timeout", "20", "--report", "har", "--report-har-path", str(har), "--output-sanitize", "false", *headers],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    (output_dir / f"schemathesis-{'seller' if with_key else 'anonymous'}.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "generated" in result.stdout
    # The headers that reach an envelope, a column or a check were fuzzed too (SPEC §7).
    sent: dict[str, list[str]] = {}
    for entry in json.loads(har.read_text())["log"]["entries"]:
        for header in entry["request"]["headers"]:
            sent.setdefault(header["name"].lower(), []).append(header["value"])
    for name in ("x-correlation-id", "idempotency-key", "x-cancel-token"):
        assert len(set(sent.get(name, []))) >= 3, f"schemathesis sent too few {name} values: {sent.get(name)}"


POSTS = ["/api/v1/sellers", "/api/v1/offers", "/api/v1/offers/{offer}/counter-offers",
         "/api/v1/offers/{offer}/reservations"]


@pytest.fixture
def seller_and_offer(cobuy):
    seller = cobuy.register_seller()
    return seller, cobuy.create_offer(seller)


@pytest.mark.parametrize("path", POSTS)
def test_malformed_json_is_a_400_problem(cobuy, seller_and_offer, path):
    seller, offer = seller_and_offer
    reply = cobuy.post(path.format(offer=offer["id"]), data='{"name": "x",', headers={
        "Content-Type": "application/json", **cobuy.auth(seller)})
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == "malformed_json"


@pytest.mark.parametrize("path", POSTS)
def test_a_body_over_64_kib_is_a_413_problem(cobuy, seller_and_offer, path):
    seller, offer = seller_and_offer
    body = '{"name": "' + "x" * (65 * 1024) + '"}'
    reply = cobuy.post(path.format(offer=offer["id"]), data=body,
                       headers={"Content-Type": "application/json", **cobuy.auth(seller)})
    assert reply.status_code == 413 and reply.json()["code"] == "payload_too_large"


def test_a_chunked_body_over_64_kib_is_refused_too(cobuy):
    def chunks():
        for _ in range(80):
            yield b"x" * 1024

    reply = cobuy.post("/api/v1/sellers", data=chunks(), headers={"Content-Type": "application/json"})
    assert reply.status_code == 413


@pytest.mark.parametrize("body", [[], "a string", 42, None, {"name": ["a"], "email": {"x": 1}}])
def test_json_of_the_wrong_shape_is_a_422_not_a_500(cobuy, body):
    reply = cobuy.post("/api/v1/sellers", json=body)
    assert reply.status_code in (400, 422), reply.text
    assert "code" in reply.json()


@pytest.mark.parametrize("name, email", [("Eve\r\nBcc: all@example.com", None), ("Eve", "eve@example.com\r\nBcc: x@y.z"),
                                         ("Eve\x00", None), ("Ev\u2028e", None)])
def test_control_characters_in_names_and_emails_are_refused(cobuy, name, email):
    reply = cobuy.post("/api/v1/sellers", json={"name": name, "email": email or unique_email()})
    assert reply.status_code == 422
    assert set(reply.json()["errors"]) <= {"name", "email"} and reply.json()["errors"]


def test_a_seller_cannot_act_on_another_sellers_offer(cobuy):
    owner, intruder = cobuy.register_seller(), cobuy.register_seller()
    offer = cobuy.create_offer(owner)
    assert cobuy.get(f"/api/v1/offers/{offer['id']}/reservations", headers=cobuy.auth(intruder)).status_code == 403
    forged = {**cobuy.auth(intruder), "X-Cobuy-Identity": "anything", "X-Forwarded-For": "10.0.0.1"}
    assert cobuy.get(f"/api/v1/offers/{offer['id']}/reservations", headers=forged).status_code == 403
    me = cobuy.get("/api/v1/sellers/me", headers=forged).json()
    assert me["id"] == intruder["id"]  # the gateway's identity, not the client's header


def test_unknown_paths_and_methods_are_problems_not_crashes(cobuy):
    assert cobuy.get("/api/v1/nowhere").status_code == 404
    assert cobuy.delete("/api/v1/offers").status_code == 405
    assert cobuy.get("/offers/does-not-exist").status_code == 404
    assert cobuy.get("/api/v1/offers", params={"page": "-1"}).status_code == 422
    assert cobuy.get("/api/v1/offers", params={"per_page": "100000"}).status_code == 422
