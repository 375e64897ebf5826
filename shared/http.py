"""What the gateway (aiohttp) and the services (Flask) agree on over HTTP, in neither framework:
the body limit, the correlation id, and that a path holds no control character."""
from __future__ import annotations

import re

from shared import logs

MAX_BODY = 64 * 1024
CORRELATION_HEADER = "X-Correlation-Id"
# C0 and DEL: a path segment holding one does not normalise (the gateway) and is refused (a service
# reached directly; PostgreSQL's text cannot hold a NUL)
CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


def accepted_correlation_id(value: str | None) -> str:
    """The caller's correlation id when it is 1–64 characters of [A-Za-z0-9._:-], else a fresh one."""
    if logs.can_travel(value):
        return value
    return logs.new_correlation_id()
