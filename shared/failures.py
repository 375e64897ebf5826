"""What a failure means: worth waiting out (transient) or not, and how to name it without secrets.

`is_transient` decides whether a relay or a consumer keeps retrying (a database, the broker or
another service restarting) or sets the thing aside at once (an event no retry can fix).
`describe` is the reason written to logs, dead-letter headers and quarantined outbox rows: the
exception's class and message with anything that looks like a token or an e-mail blanked out.
"""
from __future__ import annotations

import re
import traceback

import requests
from amqp import exceptions as amqp_errors
from kombu import exceptions as kombu_errors
from sqlalchemy import exc as sql_errors


class Nacked(RuntimeError):
    """The broker refused (nacked) a publish: an overload or alarm, not the message's fault."""


_TRANSIENT = (
    sql_errors.OperationalError,  # the database is down, restarting, or a deadlock/serialisation loser
    sql_errors.InterfaceError,  # "connection is closed"
    sql_errors.DisconnectionError,
    sql_errors.TimeoutError,  # no pooled connection in time
    amqp_errors.RecoverableConnectionError,
    amqp_errors.RecoverableChannelError,
    # the broker refusing this user or vhost (a withdrawn permission, a rotated password): an operator
    # fixes it and the same event publishes unchanged; quarantining it would lose every event meanwhile
    amqp_errors.NotAllowed,
    amqp_errors.AccessRefused,
    kombu_errors.OperationalError,
    Nacked,
    OSError,  # sockets: refused, reset, timed out (requests' own errors are sorted out first)
)


def is_transient(exc: BaseException) -> bool:
    """True when the same work may well succeed later, unchanged."""
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status >= 500 or status in (408, 429)
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(exc, requests.RequestException):  # a bad URL, an unreadable reply: retrying won't help
        return False
    if isinstance(exc, sql_errors.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, _TRANSIENT):
        return True
    cause = exc.__cause__
    return cause is not None and cause is not exc and is_transient(cause)


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TOKENISH = re.compile(r"[A-Za-z0-9_\-]{20,}")
_EMAIL = re.compile(r"[^\s@'\"(),;<>=]+@[^\s@'\"(),;<>=]+")


def _blank(match: re.Match) -> str:
    word = match.group(0)
    if _UUID.fullmatch(word):  # event and entity ids are what an operator searches for
        return word
    if len(word) >= 32 or any(c.isdigit() for c in word):  # identifiers like uq_reservation_offer_email stay
        return "[redacted]"
    return word


def redact(text: str) -> str:
    """Blank cancel tokens, API keys, signed links' secrets and e-mail addresses out of a text."""
    return _TOKENISH.sub(_blank, _EMAIL.sub("[e-mail]", text))


def describe(exc: BaseException, limit: int = 1000) -> str:
    """'ClassName: message', redacted: safe for logs, headers and the outbox."""
    message = str(exc).split("\n(Background on this error", 1)[0]
    return redact(f"{type(exc).__name__}: {message}")[:limit]


def where(exc: BaseException, frames: int = 2) -> str:
    """Where it failed in our code (the innermost frames outside installed libraries), without
    the message, which may carry values."""
    stack = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in stack if "site-packages" not in f.filename and "/lib/python" not in f.filename]
    return "".join(traceback.format_list((ours or stack)[-frames:])).rstrip()


SECRET_FIELDS = frozenset({"cancel_token", "api_key", "api_key_hash", "token", "secret", "password"})


def without_secrets(value):
    """A message body as an operator may see it: the value of every secret field replaced (the
    message itself, replayed later, keeps them)."""
    if isinstance(value, dict):
        return {k: "[redacted]" if k in SECRET_FIELDS else without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value
