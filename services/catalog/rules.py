"""catalog's rules: the term of an offer and its invitation date. Pure, with no I/O (STYLE habit 2)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

INVITATION_SHARE_OF_TERM = 0.2


def default_invite_at(opens_at: datetime, closes_at: datetime) -> datetime:
    """SPEC §2: the invitation falls at closes_at − 20 % of the term."""
    return closes_at - (closes_at - opens_at) * INVITATION_SHARE_OF_TERM


@dataclass(frozen=True)
class Term:
    """The verdict on a term: the invitation instant when it holds, else the field to correct."""
    invite_at: datetime | None = None
    faulty_field: str | None = None


def judge_term(opens_at: datetime, invite_at: datetime | None, closes_at: datetime) -> Term:
    """The close must come after the opening, and the invitation (given or 20 % before the
    close) strictly inside the term."""
    if closes_at <= opens_at:
        return Term(faulty_field="closes_at")
    invite_at = invite_at or default_invite_at(opens_at, closes_at)
    if not opens_at < invite_at < closes_at:
        return Term(faulty_field="invite_at")
    return Term(invite_at=invite_at)


DEFAULT_NEXT = "/dashboard"
MAX_NEXT = 500


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another site (`//host`,
    `/\\host`, `https:`), nor a header-breaking or over-long value; anything else is the dashboard."""
    if not value or len(value) > MAX_NEXT or not value.startswith("/") or value.startswith(("//", "/\\")):
        return DEFAULT_NEXT
    if not value.isascii() or not value.isprintable() or "\\" in value:
        return DEFAULT_NEXT
    return value
