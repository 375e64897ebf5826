"""The operator's view of webhooks (`cobuy webhooks list|retry`)."""
from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared import clock

from .tables import endpoints, messages


def endpoint_list(session: Session, seller_id: str | None = None, disabled_only: bool = False) -> list[dict]:
    """Each endpoint with its messages by state and how long its oldest due one has waited."""
    query = select(endpoints).order_by(endpoints.c.created_at)
    if seller_id:
        query = query.where(endpoints.c.seller_id == seller_id)
    if disabled_only:
        query = query.where(endpoints.c.disabled_at.is_not(None))
    counts: dict[str, dict[str, int]] = {}
    oldest: dict[str, object] = {}
    for row in session.execute(select(messages.c.endpoint_id, messages.c.state, func.count(),
                                      func.min(messages.c.next_attempt_at))
                               .group_by(messages.c.endpoint_id, messages.c.state)).all():
        counts.setdefault(row[0], {})[row[1]] = row[2]
        if row[1] == "pending":
            oldest[row[0]] = row[3]
    now = clock.now()
    return [{"id": e.id, "seller_id": e.seller_id, "seller_email": e.seller_email, "url": e.url,
             "events": e.events.split(), "created_at": clock.iso(e.created_at),
             "failing_since": clock.iso(e.failing_since), "disabled_at": clock.iso(e.disabled_at),
             "messages": counts.get(e.id, {}),
             "lag_seconds": round(max(0.0, (now - oldest[e.id]).total_seconds()), 3) if e.id in oldest else 0.0}
            for e in session.execute(query).all()]


def retry(session: Session, endpoint_ids: list[str]) -> tuple[int, int]:
    """Re-enable endpoints (the ids given, or every disabled one) and put their failed messages back in
    line, with a fresh retry window. Returns (endpoints re-enabled, messages queued again)."""
    now = clock.now()
    chosen = endpoints.c.id.in_(endpoint_ids) if endpoint_ids else endpoints.c.disabled_at.is_not(None)
    ids = list(session.execute(select(endpoints.c.id).where(chosen)).scalars())
    enabled = session.execute(update(endpoints).where(endpoints.c.id.in_(ids), endpoints.c.disabled_at.is_not(None))
                              .values(disabled_at=None, failing_since=None)).rowcount
    queued = session.execute(update(messages).where(messages.c.endpoint_id.in_(ids), messages.c.state == "failed")
                             .values(state="pending", next_attempt_at=now, created_at=now)).rowcount
    return enabled, queued
