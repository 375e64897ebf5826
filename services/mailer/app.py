"""mailer's app factory: health, readiness, metrics and the sellers' webhook API."""
from __future__ import annotations

from flask import Flask

from shared import logs
from shared.runtime import Runtime
from shared.web import create_service_app

from . import SERVICE
from .webhooks.api import webhooks_bp

def create_app(runtime: Runtime | None = None) -> Flask:
    runtime = runtime or Runtime.create(SERVICE)
    logs.configure(SERVICE, runtime.config.log_level)
    return create_service_app(runtime, "cobuy mailer", [webhooks_bp])
