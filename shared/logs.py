"""JSON-lines logging that carries the correlation id of the request or event at hand."""
from __future__ import annotations

import contextvars
import logging
import re
import sys
import uuid

from pythonjsonlogger.json import JsonFormatter

_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)


def correlation_id() -> str | None:
    return _correlation.get()


def set_correlation_id(value: str | None) -> contextvars.Token:
    return _correlation.set(value)


def reset_correlation_id(token: contextvars.Token) -> None:
    _correlation.reset(token)


# A correlation id travels into AMQP properties (at most 255 bytes) and VARCHAR(64) columns (SPEC §7).
_TRAVELS = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def can_travel(value: object) -> bool:
    """A correlation id of 1–64 characters of [A-Za-z0-9._:-]: the one rule the gateway, the services,
    the outbox and the mailer apply."""
    return isinstance(value, str) and _TRAVELS.fullmatch(value) is not None


def new_correlation_id() -> str:
    return uuid.uuid4().hex


class _CorrelationFilter(logging.Filter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.correlation_id = _correlation.get()
        return True


def configure(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_CorrelationFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("amqp", "kombu", "urllib3", "aiohttp.access", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
