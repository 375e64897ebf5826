"""The seller's identity as the gateway hands it to services: signed, so no client can forge it.

The gateway strips any X-Cobuy-* header a client sends, authenticates the API key, and sets
X-Cobuy-Identity = base64url(json) "." HMAC-SHA256 with the internal secret.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json

HEADER = "X-Cobuy-Identity"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: str, seller: dict) -> str:
    payload = _b64(json.dumps(seller, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{mac}"


def verify(secret: str, header: str | None) -> dict | None:
    if not header or "." not in header:
        return None
    payload, _, mac = header.rpartition(".")
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, expected):
        return None
    try:
        seller = json.loads(_unb64(payload))
    except (ValueError, json.JSONDecodeError):
        return None
    return seller if isinstance(seller, dict) and "id" in seller else None


def hash_api_key(api_key: str) -> str:
    """API keys are 256-bit random tokens, so a plain SHA-256 is a sound one-way store."""
    return hashlib.sha256(api_key.encode()).hexdigest()
