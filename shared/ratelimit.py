"""Per-client rate limits, shared by every worker and replica through the service's database.

`COBUY_RATE_LIMIT` reads like `reservations=30/minute;registrations=5/minute;sign_ins=5/minute` (`off` disables).
Each hit increments a fixed-window counter row (scope, key, window) with one upsert, in its
own short transaction, so the limit holds across gunicorn workers and replicas alike.
"""
from __future__ import annotations

import math
import time

from sqlalchemy import Column, Integer, MetaData, String, Table, delete
from sqlalchemy.orm import Session, sessionmaker

from shared.db import dialect_insert
from shared.problems import Problem

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse(text: str | None) -> dict[str, tuple[int, int]]:
    """{"reservations": (30, 60), …}; empty when off."""
    if not text or text.strip().lower() == "off":
        return {}
    rules = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        scope, _, rule = part.partition("=")
        count, _, period = rule.partition("/")
        if not count.strip().isdigit() or period.strip() not in PERIODS:
            raise ValueError(f"COBUY_RATE_LIMIT: cannot read {part!r} (expected scope=N/second|minute|hour|day)")
        rules[scope.strip()] = (int(count), PERIODS[period.strip()])
    return rules


def rate_limit_table(metadata: MetaData) -> Table:
    return Table(
        "rate_limits",
        metadata,
        Column("scope", String(40), primary_key=True),
        Column("key", String(300), primary_key=True),
        Column("window", Integer, primary_key=True),
        Column("hits", Integer, nullable=False),
    )


class RateLimiter:
    def __init__(self, sessions: sessionmaker[Session], table: Table, rules: dict[str, tuple[int, int]]):
        self.sessions = sessions
        self.table = table
        self.rules = rules

    def hit(self, scope: str, *keys: str) -> None:
        """Count one request against each key (client address, e-mail…); 429 past the limit."""
        rule = self.rules.get(scope)
        if rule is None:
            return
        limit, period = rule
        now = time.time()
        window = int(now // period)
        retry_after = max(1, math.ceil((window + 1) * period - now))
        with self.sessions.begin() as session:
            for key in keys:
                if not key:
                    continue
                stmt = dialect_insert(session, self.table).values(scope=scope, key=key[:300], window=window, hits=1)
                stmt = stmt.on_conflict_do_update(index_elements=["scope", "key", "window"],
                                                  set_={"hits": self.table.c.hits + 1}).returning(self.table.c.hits)
                hits = session.execute(stmt).scalar_one()
                if hits > limit:
                    raise Problem(429, "rate_limited", f"Too many {scope}: at most {limit} per {period} s.",
                                  headers={"Retry-After": str(retry_after)})
                # Old windows are worth nothing: sweep them when a counter opens, one window in ten.
                if hits == 1 and window % 10 == 0:
                    session.execute(delete(self.table).where(self.table.c.window < window - 1))
