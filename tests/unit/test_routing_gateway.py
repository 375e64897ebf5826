"""The gateway in-process in front of a fake service that echoes what reached it: what travels upstream
and what comes back to the client (no cobuy running)."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.cache import SELLER_COOKIE
from shared import identity
from shared.config import SERVICES, Config, trusted_networks

SELLER = {"id": "s1", "name": "Sam", "email": "sam@example.com"}


def fake_service() -> web.Application:
    async def auth(request):
        body = await request.json()
        return web.json_response(SELLER) if body["api_key"] == "good" else web.json_response({}, status=404)

    async def echo(request):
        if request.path.endswith("/redirect"):
            raise web.HTTPFound(f"http://{request.host}/offers/abc?x=1")
        headers = {"Cache-Control": "public, s-maxage=1"} if "public" in request.query else {}
        answer = web.json_response({"target": request.raw_path, "headers": list(request.headers.items())},
                                   headers=headers)
        if "two-cookies" in request.query:  # as catalog's sign-in: its session, and Flask's renewed one
            answer.set_cookie("cobuy_seller", "s")
            answer.set_cookie("session", "f")
        return answer

    app = web.Application()
    app.router.add_post("/internal/auth", auth)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def through_gateway(scenario, trusted: str = "") -> dict:
    """Runs `scenario(client)` against a gateway whose every service is the fake one."""
    async def run():
        upstream = TestServer(fake_service())
        await upstream.start_server()
        url = str(upstream.make_url("")).rstrip("/")
        config = Config(http_port=0, data_dir=Path("."), amqp_url=None, database_url=None, smtp_url=None,
                        mail_from="x", public_url="http://public.example", rate_limit="off", internal_secret="s",
                        service_urls={name: url for name in SERVICES}, trusted_proxies=trusted_networks(trusted))
        client = TestClient(TestServer(await create_app(config)))
        await client.start_server()
        try:
            return await scenario(client)
        finally:
            await client.close()
            await upstream.close()

    return asyncio.run(run())


def test_a_lowercase_authorization_header_authenticates_but_never_travels_upstream():
    async def scenario(client):  # written raw: aiohttp's client capitalises known names (so does its C parser)
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(b"GET /api/v1/sellers/me HTTP/1.1\r\nHost: x\r\nauthorization: Bearer good\r\n"
                     b"x-cobuy-identity: forged\r\nx_cobuy_identity: forged\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        return json.loads(answer.partition(b"\r\n\r\n")[2])

    received = through_gateway(scenario)
    names = [name.lower().replace("_", "-") for name, _ in received["headers"]]
    assert "authorization" not in names and names.count("x-cobuy-identity") == 1
    signed = dict((k.lower(), v) for k, v in received["headers"])["x-cobuy-identity"]
    assert identity.verify("s", signed)["id"] == "s1"


def test_client_sent_forwarding_and_identity_headers_never_travel_upstream():
    async def scenario(client):
        reply = await client.get("/api/v1/offers", headers={
            "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "Forwarded": "for=6.6.6.6",
            "X-Cobuy-Identity": "forged", "X-Real-IP": "6.6.6.6", "Accept": "application/json"})
        return await reply.json()

    headers = {k.lower(): v for k, v in through_gateway(scenario)["headers"]}
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["accept"] == "application/json"
    assert not {"x-forwarded-proto", "forwarded", "x-cobuy-identity", "x-real-ip"} & set(headers)


def test_behind_a_trusted_proxy_the_forwarded_client_travels_upstream_as_one_address():
    async def scenario(client):
        reply = await client.get("/api/v1/offers", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.4"})
        return await reply.json()

    headers = {k.lower(): v for k, v in through_gateway(scenario, trusted="127.0.0.1")["headers"]}
    assert headers["x-forwarded-for"] == "198.51.100.4"


def test_the_upstream_receives_the_normalised_path_it_was_routed_on():
    async def scenario(client):
        from yarl import URL

        reply = await client.get(URL("/api/v1/x/%2e%2e/offers/./caf%C3%A9?page=2", encoded=True))
        return await reply.json()

    assert through_gateway(scenario)["target"] == "/api/v1/offers/caf%C3%A9?page=2"


def test_a_redirect_from_a_service_names_no_internal_address():
    async def scenario(client):
        reply = await client.get("/offers/redirect", allow_redirects=False)
        return {"status": reply.status, "location": reply.headers["Location"]}

    assert through_gateway(scenario) == {"status": 302, "location": "/offers/abc?x=1"}


def test_the_answers_correlation_id_is_the_sanitised_one():
    async def scenario(client):
        reply = await client.get("/api/v1/offers", headers={"X-Correlation-Id": "x" * 300})
        body = await reply.json()
        return reply.headers["X-Correlation-Id"], dict((k.lower(), v) for k, v in body["headers"])

    answered, upstream = through_gateway(scenario)
    assert answered == upstream["x-correlation-id"] and len(answered) <= 64


def test_nothing_is_forwarded_for_a_path_that_does_not_normalise():
    async def scenario(client):
        from yarl import URL

        replies = [await client.get(URL(target, encoded=True)) for target in ("/%2Finternal/auth", "/%2e%2e", "/a%zz")]
        return [(r.status, json.loads(await r.text()).get("code")) for r in replies]

    assert through_gateway(scenario) == [(400, "malformed_path")] * 3


def test_a_page_fetched_with_a_sellers_session_is_never_kept_for_another_visitor():
    """Even a page its service (wrongly) calls public: a session cookie is a credential, as a key is."""
    async def scenario(client):
        seller = await client.get("/dashboard?public=1", headers={"Cookie": f"{SELLER_COOKIE}=the-sellers-token"})
        assert "the-sellers-token" in await seller.text()
        stranger = await client.get("/dashboard?public=1")
        return stranger.headers.get("X-Cache"), await stranger.text()

    cache_state, body = through_gateway(scenario)
    assert cache_state is None and "the-sellers-token" not in body


def test_the_gateway_knows_the_sellers_session_cookie_by_catalogs_name_for_it():
    from services.catalog.seller_pages import COOKIE  # a test may look at both sides of the door
    assert SELLER_COOKIE == COOKIE


def test_every_cookie_an_upstream_sets_reaches_the_client_not_only_the_last():
    async def scenario(client):
        reply = await client.get("/sellers/sign-in/link?two-cookies=1")
        return reply.headers.getall("Set-Cookie")

    assert sorted(c.split("=", 1)[0] for c in through_gateway(scenario)) == ["cobuy_seller", "session"]
