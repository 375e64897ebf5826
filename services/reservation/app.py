"""reservation's app factory."""
from __future__ import annotations

from flask import Flask

from shared import logs
from shared.runtime import Runtime
from shared.web import create_service_app

from . import SERVICE
from .api import bp
from .tables import rate_limits

def create_app(runtime: Runtime | None = None) -> Flask:
    runtime = runtime or Runtime.create(SERVICE, pool_size=10)
    logs.configure(SERVICE, runtime.config.log_level)
    app = create_service_app(runtime, "cobuy reservation", [bp])
    app.extensions["cobuy.limiter"] = runtime.rate_limiter(rate_limits)
    return app
