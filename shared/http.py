"""What the gateway (aiohttp) and the services (Flask) agree on over HTTP, in neither framework:
the body limit and the correlation id."""
from __future__ import annotations

from shared import logs

MAX_BODY = 64 * 1024
CORRELATION_HEADER = "X-Correlation-Id"


def accepted_correlation_id(value: str | None) -> str:
    """The caller's correlation id when it is 1–64 characters of [A-Za-z0-9._:-], else a fresh one."""
    if logs.can_travel(value):
        return value
    return logs.new_correlation_id()
