"""catalog's app factory: the one place that wires it."""
from __future__ import annotations

import hashlib
from flask import Flask

from shared import logs
from shared.runtime import Runtime
from shared.web import create_service_app

from . import SERVICE, csrf, languages
from .api import internal_bp, offers_bp, sellers_bp
from .dashboard import dashboard_bp
from .pages import pages_bp
from .seller_pages import seller_pages_bp
from .tables import rate_limits

def create_app(runtime: Runtime | None = None) -> Flask:
    runtime = runtime or Runtime.create(SERVICE)
    logs.configure(SERVICE, runtime.config.log_level)
    app = create_service_app(runtime, "cobuy catalog", [sellers_bp, offers_bp], [internal_bp, pages_bp, seller_pages_bp, dashboard_bp])
    # Flask's own session is no longer written: the forms' CSRF secret has its own cookie (csrf.py),
    # the seller's session is seller_pages'. The key still reads a token from before (csrf._legacy_valid).
    app.secret_key = hashlib.sha256(f"csrf|{runtime.config.internal_secret}".encode()).hexdigest()
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # a page left open for a day still submits
    app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SECURE=runtime.config.public_url.startswith("https:"))
    app.extensions["cobuy.limiter"] = runtime.rate_limiter(rate_limits)
    languages.install(app)
    csrf.Protection(app, exempt_blueprints=tuple(bp.name for bp in (sellers_bp, offers_bp, internal_bp)))
    return app
