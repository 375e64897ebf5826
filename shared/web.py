"""What every service's Flask app has: problems, correlation ids, metrics, health, identity."""
from __future__ import annotations

import ipaddress
import logging
import time
from typing import Callable

from flask import Flask, Response, current_app, g, json, request
from werkzeug.exceptions import HTTPException

from shared import identity, logs, metrics
from shared.config import Config
from shared.http import CONTROL_CHARACTER, CORRELATION_HEADER, MAX_BODY, accepted_correlation_id
from shared.problems import PROBLEM_JSON, Problem

log = logging.getLogger(__name__)


HTTP_CODES = {
    400: "bad_request",
    401: "authentication_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
}


def _http_problem(exc: HTTPException) -> Problem:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    if status == 400 and messages and "json" in messages and isinstance(messages["json"], list):
        return Problem(400, "malformed_json", "The request body is not valid JSON.")
    if status == 422 and messages:
        errors: dict = {}
        for location_errors in messages.values():
            if isinstance(location_errors, dict):
                errors.update(location_errors)
        if "_schema" in errors:  # marshmallow's name for the body as a whole (a list, a string…)
            errors["body"] = errors.pop("_schema")
        fields = ", ".join(sorted(errors))
        return Problem(422, "validation_failed", f"Invalid fields: {fields}", errors=errors)
    if status == 413:
        return Problem(413, "payload_too_large", f"The body is over {MAX_BODY // 1024} KiB.")
    allow = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}  # a 405 names what is allowed
    return Problem(status, HTTP_CODES.get(status, "error"), exc.description, headers=allow)


def _not_json(req) -> bool:
    """An API request with a body that does not say it is JSON: refused, not read as no body."""
    has_body = bool(req.content_length) or "chunked" in req.headers.get("Transfer-Encoding", "").lower()
    return (req.method in ("POST", "PUT", "PATCH") and req.path.startswith("/api/") and has_body
            and not req.is_json)


def problem_response(problem: Problem) -> Response:
    return Response(json.dumps(problem.body()), status=problem.status, mimetype=PROBLEM_JSON,
                    headers=problem.headers)


def install(app: Flask, service: str, config: Config, ready_checks: list[Callable[[], None]]) -> None:
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["COBUY"] = config

    @app.before_request
    def _begin():
        g.started = time.perf_counter()
        # the gateway already sanitised it; a service is never trusted to be reached only that way
        g.correlation_token = logs.set_correlation_id(accepted_correlation_id(request.headers.get(CORRELATION_HEADER)))
        if request.view_args and any(isinstance(v, str) and CONTROL_CHARACTER.search(v)
                                     for v in request.view_args.values()):
            # as the gateway refuses it (gateway/edge.normalise_path); PostgreSQL's text cannot hold a NUL
            return problem_response(Problem(400, "malformed_path", "The path does not normalise to a plain one."))
        if _not_json(request):
            return problem_response(Problem(
                415, "unsupported_media_type", "Send the body as JSON, with the header Content-Type: application/json."))

    @app.after_request
    def _finish(response: Response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        metrics.HTTP_LATENCY.labels(route).observe(time.perf_counter() - g.get("started", time.perf_counter()))
        response.headers[CORRELATION_HEADER] = logs.correlation_id() or ""
        if response.status_code == 204:  # no content, so no content type either
            response.headers.pop("Content-Type", None)
        return response

    @app.teardown_request
    def _reset(_exc):
        token = g.pop("correlation_token", None)
        if token is not None:
            logs.reset_correlation_id(token)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "service": service}

    @app.get("/readyz")
    def readyz():
        failures = {}
        for check in ready_checks:
            try:
                check()
            except Exception as exc:  # readiness reports any failure of a dependency
                failures[check.__name__] = str(exc)[:200]
        if failures:
            return problem_response(Problem(503, "not_ready", "A dependency is unreachable.", failures=failures))
        return {"status": "ready", "service": service}

    @app.get("/metrics")
    def metrics_endpoint():
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)


def install_error_handlers(app: Flask) -> None:
    """Registered after flask-smorest's Api so that ours win."""

    @app.errorhandler(Problem)
    def _problem(exc: Problem):
        return problem_response(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return problem_response(_http_problem(exc))

    @app.errorhandler(RecursionError)
    def _too_deep(_exc: RecursionError):  # JSON nested thousands deep: the client's error, not ours
        return problem_response(Problem(400, "malformed_json", "The JSON body is nested too deeply."))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return problem_response(Problem(500, "internal_error", "Something went wrong on our side."))


def client_address() -> str:
    """The client as the gateway computed it (gateway/edge.py): the gateway replaces X-Forwarded-For
    with that one address on every request. Anything else there is not an address we trust."""
    forwarded = (request.headers.get("X-Forwarded-For") or "").strip()
    try:
        return str(ipaddress.ip_address(forwarded))
    except ValueError:
        return request.remote_addr or ""


def current_seller() -> dict | None:
    config: Config = current_app.config["COBUY"]
    return identity.verify(config.internal_secret, request.headers.get(identity.HEADER))


def require_seller() -> dict:
    seller = current_seller()
    if seller is None:
        raise Problem(401, "authentication_required", "Send Authorization: Bearer <api_key>.")
    return seller


def create_service_app(runtime, title: str, api_blueprints: list, other_blueprints: list = ()) -> Flask:
    """The one wiring place shared by every service's app factory."""
    from flask_smorest import Api

    app = Flask(runtime.service, static_folder=None)
    app.config.update(
        API_TITLE=title,
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
    )
    app.extensions["cobuy.runtime"] = runtime
    install(app, runtime.service, runtime.config, runtime.ready_checks())
    api = Api(app)
    for blueprint in api_blueprints:
        api.register_blueprint(blueprint)
    for blueprint in other_blueprints:
        app.register_blueprint(blueprint)
    install_error_handlers(app)
    return app
