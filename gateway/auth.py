"""A short-lived cache of API key → seller, so most requests skip the catalog round trip.

Only known keys are cached, for ten seconds: an unknown key is always asked again, and a
rotated key stops working within the TTL (docs/operations.md).
"""
from __future__ import annotations

import hashlib
import time


class KeyCache:
    def __init__(self, ttl_seconds: float, max_entries: int = 50_000):
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, dict]] = {}

    @staticmethod
    def _key(api_key: str) -> str:
        return hashlib.sha256(api_key.encode()).hexdigest()

    def get(self, api_key: str) -> dict | None:
        entry = self._entries.get(self._key(api_key))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, api_key: str, seller: dict) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[self._key(api_key)] = (time.monotonic() + self.ttl, seller)
