"""The gateway: an aiohttp reverse proxy (a Flask+requests hop measured 1.9k req/s here;
an async hop with pooled keep-alive connections keeps the cost of the extra hop low)."""
from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict
from yarl import URL

from shared import csrf, languages, config as config_module, identity, logs, metrics
from shared.problems import PROBLEM_JSON, Problem
from shared.http import CORRELATION_HEADER, MAX_BODY, accepted_correlation_id

from . import cache, edge, openapi, routing, streams
from .auth import KeyCache

log = logging.getLogger("gateway")


SERVER = "cobuy"  # one name on every answer, the gateway's own and the services' alike; no versions
UPSTREAM_IDLE_SECONDS = 30  # under the services' keep-alive (cobuy.supervisor.SERVICE_KEEPALIVE_SECONDS)


def problem(status: int, code: str, detail: str | None = None, headers: dict | None = None, **extra) -> web.Response:
    """The same shape as a service's problem: `application/problem+json` exactly (no charset)."""
    body = json.dumps(Problem(status, code, detail, **extra).body()).encode()
    return web.Response(body=body, status=status, headers={"Content-Type": PROBLEM_JSON, **(headers or {})})


class Gateway:
    def __init__(self, config):
        self.config = config
        self.session: aiohttp.ClientSession | None = None
        self.keys = KeyCache(ttl_seconds=10.0)
        self.pages = cache.MicroCache()
        self.form_key = csrf.form_key(config.internal_secret)
        self.secure_cookies = config.public_url.startswith("https:")
        self._openapi: tuple[float, dict] | None = None
        self.feed = streams.OfferFeed(self.offer_changes)

    async def start(self, _app) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=UPSTREAM_IDLE_SECONDS),
            timeout=aiohttp.ClientTimeout(total=30, connect=5),
            auto_decompress=False,
        )

    async def end_streams(self, _app) -> None:
        await self.feed.close()

    async def stop(self, _app) -> None:
        if self.session:
            await self.session.close()

    # -- authentication ------------------------------------------------------------------------

    async def seller_for(self, authorization: str) -> dict | None:
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key or len(key) > 200:
            return None
        cached = self.keys.get(key)
        if cached is not None:
            return cached
        url = f"{self.config.service_url('catalog')}/internal/auth"
        async with self.session.post(url, json={"api_key": key}) as reply:
            if reply.status == 404:
                return None
            reply.raise_for_status()
            seller = await reply.json()
        seller = {k: seller[k] for k in ("id", "name", "email")}
        self.keys.put(key, seller)
        return seller

    async def offer_changes(self, params: dict) -> dict:
        """catalog's answer to the live streams' question (gateway/streams.py); never cached."""
        url = f"{self.config.service_url('catalog')}/internal/offer-changes"
        async with self.session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=5)) as reply:
            reply.raise_for_status()
            return await reply.json()

    # -- proxying --------------------------------------------------------------------------------

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        path = request[PATH] if PATH in request else edge.normalise_path(request.rel_url.raw_path)
        if path is None:
            return problem(400, "malformed_path", "The path does not normalise to a plain one.")
        service = request[SERVICE] = routing.service_for(path)
        if service is None:
            return problem(404, "not_found", "No such resource.")
        forwarded = edge.forwardable_headers(request.headers.items())
        # Only what travels must be writable upstream: a bad correlation id is replaced, not refused.
        if any(edge.unforwardable(value) for _, value in forwarded) \
                or edge.unforwardable(request.headers.get("Authorization", "")):
            return problem(400, "malformed_header", "A header value has control characters or is not UTF-8.")
        declared = request.content_length
        if declared is not None and declared > MAX_BODY:
            return problem(413, "payload_too_large", f"The body is over {MAX_BODY // 1024} KiB.")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return problem(413, "payload_too_large", f"The body is over {MAX_BODY // 1024} KiB.")
        headers = CIMultiDict(forwarded)
        correlation = request[CORRELATION_HEADER]
        headers[CORRELATION_HEADER] = correlation
        headers["X-Forwarded-For"] = edge.client_address(
            request.remote, request.headers.getall("X-Forwarded-For", []), self.config.trusted_proxies)
        authorization = request.headers.get("Authorization")
        if authorization:
            try:
                seller = await self.seller_for(authorization)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return problem(503, "auth_unavailable", "Could not check the API key just now.")
            if seller is None:
                return problem(401, "invalid_api_key", "The API key is unknown or revoked.",
                               headers={"WWW-Authenticate": "Bearer"})
            headers[identity.HEADER] = identity.sign(self.config.internal_secret, seller)
        # built from the path that was routed, never from what the client wrote
        target = edge.upstream_target(path, request.rel_url.raw_query_string)
        url = URL(f"{self.config.service_url(service)}{target}", encoded=True)

        async def load() -> cache.Stored:
            async with self.session.request(request.method, url, headers=headers, data=body or None,
                                            allow_redirects=False) as upstream:
                payload = await upstream.read()
                return cache.Stored(time.monotonic() + cache.lifetime(upstream.status, upstream.headers),
                                    upstream.status, self.public_headers(upstream.headers), payload)

        try:
            cookies = cache.page_cookies(request.headers) if request.method in ("GET", "HEAD") else None
            if cookies is not None and not authorization and cache.SELLER_COOKIE not in cookies:
                headers[csrf.EDGE_FILLS] = "1"  # a kept page's form tokens go in here, per visitor
                language = cache.language_of(request.query.get(languages.QUERY), cookies,
                                             request.headers.get("Accept-Language"))
                stored, hit = await self.pages.fetch((request.method, target, language), load)
                out = CIMultiDict(stored.headers)  # a copy: a kept answer's headers are shared
            else:  # (a client's own X-Cobuy-* headers never travel: edge.forwardable_headers)
                stored, hit = await load(), False
                out = stored.headers  # this request's own, made by public_headers: no copy
        except asyncio.TimeoutError:
            return problem(504, "upstream_timeout", f"The {service} service did not answer in time.")
        except aiohttp.ClientError:
            return problem(502, "upstream_unavailable", f"The {service} service is unavailable.")
        out[CORRELATION_HEADER] = correlation
        if hit:
            out["X-Cache"] = "HIT"
        body = stored.body
        if csrf.HAS_SLOTS in out:
            body = cache.fill_form_tokens(out, stored, cookies.get(csrf.COOKIE), self.form_key,
                                          self.secure_cookies)
        return web.Response(status=stored.status, body=body, headers=out)

    def public_headers(self, upstream_headers) -> CIMultiDict:
        """An upstream answer's headers as a client may see them: no hop-by-hop ones, and no
        redirect that names a service's internal address. Repeated names stay repeated (two
        Set-Cookie headers are two cookies, not the last one)."""
        kept = CIMultiDict((k, v) for k, v in upstream_headers.items()
                           if k.lower() not in edge.HOP_BY_HOP and k.lower() != CORRELATION_HEADER.lower())
        for name in ("Location", "Content-Location"):
            if name in kept:
                kept[name] = edge.public_location(kept[name], self.config.service_urls.values())
        return kept

    # -- the gateway's own routes ----------------------------------------------------------------

    async def healthz(self, _request) -> web.Response:
        return web.json_response({"status": "ok", "service": "gateway"})

    async def readyz(self, request) -> web.Response:
        """The gateway's own readiness: it holds no data, so a serving process is ready. A service that
        is down answers 502/503 on its own routes; chaining its readiness here would take the whole
        site out with it. `?services=all` (cobuy up, tests) also asks every service, at once."""
        if request.query.get("services") != "all":
            return web.json_response({"status": "ready", "service": "gateway"})
        answers = await asyncio.gather(*(self._service_ready(s) for s in config_module.SERVICES))
        failures = {service: reason for service, reason in zip(config_module.SERVICES, answers) if reason}
        if failures:
            return problem(503, "not_ready", "A service is not ready.", failures=failures)
        return web.json_response({"status": "ready", "service": "gateway"})

    async def _service_ready(self, service: str) -> str | None:
        try:
            async with self.session.get(f"{self.config.service_url(service)}/readyz",
                                        timeout=aiohttp.ClientTimeout(total=3)) as reply:
                return None if reply.status == 200 else f"readyz {reply.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return repr(exc)[:200]

    async def metrics(self, _request) -> web.Response:
        body, content_type = metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def openapi(self, _request) -> web.Response:
        if self._openapi is None or time.monotonic() - self._openapi[0] > 60:
            documents = []
            for service in openapi.API_SERVICES:
                async with self.session.get(f"{self.config.service_url(service)}/openapi.json") as reply:
                    reply.raise_for_status()
                    documents.append(await reply.json())
            self._openapi = (time.monotonic(), openapi.merge(documents))
        return web.json_response(self._openapi[1])


class RefusedRequests(logging.Filter):
    """aiohttp logs a request it could not parse (a 10 KB header, a control character) as an ERROR
    whose traceback quotes the offending line, API keys and cancel tokens included. It is the
    client's error, answered 400: one INFO line naming its kind is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "refused a malformed request: %s %s", (exc.code, type(exc).__name__)
            record.exc_info, record.exc_text = None, None
        return True


# What `observe` works out once per request for the proxy and for its own metrics label: the
# normalised path (None: it does not normalise) and, once the proxy routed it, the service.
PATH = "cobuy.path"
SERVICE = "cobuy.service"


@web.middleware
async def observe(request: web.Request, handler):
    started = time.perf_counter()
    request[CORRELATION_HEADER] = accepted_correlation_id(request.headers.get(CORRELATION_HEADER))
    path = request[PATH] = edge.normalise_path(request.rel_url.raw_path)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = problem(exc.status, "not_found" if exc.status == 404 else "bad_request", exc.reason)
    except Exception:
        log.exception("gateway error on %s %s", request.method, request.path)
        response = problem(500, "internal_error", "Something went wrong on our side.")
    # every answer, the gateway's own refusals included, names its correlation id and no software
    response.headers[CORRELATION_HEADER] = request[CORRELATION_HEADER]
    response.headers["Server"] = SERVER
    label = routing.route_label(path, request.get(SERVICE, routing.UNROUTED))
    metrics.HTTP_REQUESTS.labels(label, request.method, str(response.status)).inc()
    metrics.HTTP_LATENCY.labels(label).observe(time.perf_counter() - started)
    return response


OPERATOR_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def operator_port_only(operator_port: int):
    """COBUY_OPERATOR_PORT: the operator endpoints on that port only, and only them there. The Ingress
    routes the public port, so metrics and readiness stay inside the cluster (probes, Prometheus)."""

    @web.middleware
    async def split(request: web.Request, handler):
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        on_operator_port = isinstance(sockname, tuple) and sockname[1] == operator_port
        if on_operator_port != (request.path in OPERATOR_PATHS):
            return problem(404, "not_found", "No such resource.")
        return await handler(request)

    return split


async def create_app(config=None) -> web.Application:
    config = config or config_module.get()
    logs.configure("gateway", config.log_level)
    for name in ("gunicorn.error", "aiohttp.server"):  # the logger aiohttp is given under gunicorn, or its own
        logging.getLogger(name).addFilter(RefusedRequests())
    gateway = Gateway(config)
    middlewares = [observe] + ([operator_port_only(config.operator_port)] if config.operator_port else [])
    app = web.Application(client_max_size=MAX_BODY, middlewares=middlewares)
    app.on_startup.append(gateway.start)
    app.on_shutdown.append(gateway.end_streams)
    app.on_cleanup.append(gateway.stop)
    live = streams.Streams(gateway.feed, CORRELATION_HEADER)
    app.router.add_get("/api/v1/offers/stream", live.all_offers, allow_head=False)
    app.router.add_get("/api/v1/offers/{offer_id}/stream", live.one_offer, allow_head=False)
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/readyz", gateway.readyz)
    app.router.add_get("/metrics", gateway.metrics)
    app.router.add_get("/api/v1/openapi.json", gateway.openapi)
    app.router.add_route("*", "/{tail:.*}", gateway.proxy)
    return app
