"""Pure pieces of the plumbing: routing, identity signing, money, envelopes, input rules."""
import pytest
from marshmallow import Schema, ValidationError

from gateway.openapi import merge
from gateway.routing import service_for
from shared import identity
from shared.envelope import Envelope, MalformedEnvelope
from shared.money import exponent, format_money
from shared.validation import Email, StrictInteger, Text


@pytest.mark.parametrize("path, service", [
    ("/api/v1/sellers", "catalog"),
    ("/api/v1/sellers/me", "catalog"),
    ("/api/v1/offers", "catalog"),
    ("/api/v1/offers/abc", "catalog"),
    ("/api/v1/offers/abc/counter-offers", "auction"),
    ("/api/v1/offers/abc/reservations", "reservation"),
    ("/api/v1/reservations/r1", "reservation"),
    ("/api/v1/webhooks", "mailer"),
    ("/api/v1/webhooks/w1/deliveries", "mailer"),
    ("/", "catalog"),
    ("/offers/abc", "catalog"),
    ("/internal/auth", None),
    ("/internal/offers/abc", None),
    ("/api/v1/nothing", None),
    ("/api/v1/openapi.json", None),
])
def test_gateway_routes_each_path_to_its_service(path, service):
    assert service_for(path) == service


def test_identity_is_verified_and_a_forged_one_refused():
    header = identity.sign("secret", {"id": "s1", "name": "A", "email": "a@x.io"})
    assert identity.verify("secret", header)["id"] == "s1"
    assert identity.verify("other-secret", header) is None
    payload, _, mac = header.rpartition(".")
    forged = identity.sign("guess", {"id": "s2", "name": "B", "email": "b@x.io"}).rpartition(".")[0] + "." + mac
    assert identity.verify("secret", forged) is None
    assert identity.verify("secret", "garbage") is None


@pytest.mark.parametrize("minor, currency, text", [(4999, "usd", "$49.99"), (1500, "jpy", "¥1,500"),
                                                   (1234, "kwd", "KWD1.234"), (100000, "eur", "€1,000.00")])
def test_money_is_formatted_in_its_currency_minor_unit(minor, currency, text):
    assert format_money(minor, currency).replace("\xa0", "") == text


def test_currency_exponents():
    assert (exponent("usd"), exponent("jpy"), exponent("kwd")) == (2, 0, 3)


def test_envelope_round_trip_and_malformed_bodies():
    env = Envelope(type="OfferPublished", data={"a": 1}, producer="catalog", correlation_id="c1")
    assert Envelope.from_dict(env.to_dict()) == env
    for body in (None, [], {"type": "X"}, {"id": "1", "type": "X", "producer": "p", "data": []}):
        with pytest.raises(MalformedEnvelope):
            Envelope.from_dict(body)


class _Form(Schema):
    name = Text(max_length=10)
    email = Email()
    count = StrictInteger()


@pytest.mark.parametrize("field, value", [("name", "two\nlines"), ("name", "x" * 11), ("name", "  "),
                                          ("name", "nul\x00"), ("email", "not-an-address"),
                                          ("email", "a@b.c\r\nBcc: x@y.z"), ("count", "3"), ("count", 2.5),
                                          ("count", True)])
def test_input_rules_refuse(field, value):
    with pytest.raises(ValidationError) as info:
        _Form().load({field: value})
    assert field in info.value.messages


def test_input_rules_accept_and_normalise():
    assert _Form().load({"name": "  Ann ", "email": "Ann@Example.COM", "count": 3}) == {
        "name": "Ann", "email": "Ann@example.com", "count": 3}


def test_openapi_documents_merge_and_mark_seller_routes():
    merged = merge([
        {"paths": {"/api/v1/offers": {"post": {}}, "/healthz": {"get": {}}}, "components": {"schemas": {"A": {}}}},
        {"paths": {"/api/v1/offers/{offer_id}/counter-offers": {"post": {}}}, "components": {"schemas": {"B": {}}}},
    ])
    assert set(merged["paths"]) == {"/api/v1/offers", "/api/v1/offers/{offer_id}/counter-offers"}
    assert merged["paths"]["/api/v1/offers"]["post"]["security"] == [{"sellerKey": []}]
    assert set(merged["components"]["schemas"]) == {"A", "B"}
    for item in merged["paths"].values():
        for operation in item.values():
            assert "X-Correlation-Id" in {p["name"] for p in operation["parameters"] if p["in"] == "header"}


def test_the_gateway_drops_an_idle_upstream_connection_before_the_service_does():
    """Else the gateway may reuse a connection the service is closing that instant: a 502."""
    from cobuy.supervisor import SERVICE_KEEPALIVE_SECONDS, gunicorn_argv
    from gateway.app import UPSTREAM_IDLE_SECONDS

    argv = gunicorn_argv("reservation", 2, "127.0.0.1:1")
    assert int(argv[argv.index("--keep-alive") + 1]) == SERVICE_KEEPALIVE_SECONDS > UPSTREAM_IDLE_SECONDS


def test_every_setting_read_from_the_environment_is_listed_in_the_readme():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    read = set(re.findall(r"COBUY_[A-Z_]+", (root / "shared" / "config.py").read_text()))
    assert read, "config.py reads no setting?"
    readme = (root / "README.md").read_text()
    assert sorted(v for v in read if v not in readme) == []
