"""Sellers on the web (SPEC §9): one-time sign-in links by e-mail, and the sessions they open.

A link and a session are each a 256-bit random token; only its SHA-256 is stored (as API keys
are), so a copy of the tables opens nothing. A link is used once: the conditional UPDATE that
marks it used is the only way to a session, so of two clicks at once exactly one wins.
"""
from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared import clock
from shared.identity import hash_api_key as hash_token
from shared.outbox import record_event

from . import SERVICE
from .events import SignInLinkRequested
from .rules import safe_next
from .sellers import public_seller
from .tables import outbox, seller_sessions, sellers, sign_in_links

LINK_LIFETIME = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=12)
MAX_TOKEN = 100  # ours are 43 characters; anything much longer is not one of ours


def request_link(session: Session, email: str, next_path: str | None = None) -> bool:
    """Mail a sign-in link to the seller with this address, if there is one (True). The caller
    answers the same either way: whether an address is registered is nobody's business."""
    row = session.execute(select(sellers).where(sellers.c.email == email.strip().lower())).first()
    if row is None:
        return False
    issue_link(session, public_seller(row), next_path)
    return True


def issue_link(session: Session, seller: dict, next_path: str | None = None) -> None:
    token = secrets.token_urlsafe(32)
    now = clock.now()
    forget_stale(session)
    session.execute(sign_in_links.insert().values(
        token_hash=hash_token(token), seller_id=seller["id"], next_path=safe_next(next_path), created_at=now,
        expires_at=now + LINK_LIFETIME))
    record_event(session, outbox, SERVICE, SignInLinkRequested(
        seller_id=seller["id"], name=seller["name"], email=seller["email"], token=token,
        expires_at=now + LINK_LIFETIME))


def _known(token: str | None) -> str | None:
    return hash_token(token) if token and len(token) <= MAX_TOKEN else None


def link_state(session: Session, token: str | None) -> str:
    """'usable', 'used', 'expired' or 'unknown': what the link page tells before its button is pressed."""
    token_hash = _known(token)
    row = token_hash and session.execute(select(sign_in_links).where(sign_in_links.c.token_hash == token_hash)).first()
    if not row:
        return "unknown"
    if row.used_at is not None:
        return "used"
    return "expired" if row.expires_at <= clock.now() else "usable"


def redeem_link(session: Session, token: str | None) -> tuple[str, str] | None:
    """(session token, where to go next) for a usable link, which is used up by this; else None."""
    token_hash = _known(token)
    if token_hash is None:
        return None
    now = clock.now()
    used = session.execute(
        update(sign_in_links)
        .where(sign_in_links.c.token_hash == token_hash, sign_in_links.c.used_at.is_(None),
               sign_in_links.c.expires_at > now)
        .values(used_at=now)
        .returning(sign_in_links.c.seller_id, sign_in_links.c.next_path)
    ).first()
    if used is None:
        return None
    session_token = secrets.token_urlsafe(32)
    session.execute(seller_sessions.insert().values(
        token_hash=hash_token(session_token), seller_id=used.seller_id, created_at=now,
        expires_at=now + SESSION_LIFETIME))
    return session_token, used.next_path


def seller_for_session(session: Session, token: str | None) -> dict | None:
    """The seller whose live session this is (not expired, not revoked), or None."""
    token_hash = _known(token)
    if token_hash is None:
        return None
    row = session.execute(
        select(sellers).join(seller_sessions, seller_sessions.c.seller_id == sellers.c.id)
        .where(seller_sessions.c.token_hash == token_hash, seller_sessions.c.revoked_at.is_(None),
               seller_sessions.c.expires_at > clock.now())
    ).first()
    return public_seller(row) if row else None


def revoke_session(session: Session, token: str | None) -> None:
    token_hash = _known(token)
    if token_hash is not None:
        session.execute(update(seller_sessions).where(seller_sessions.c.token_hash == token_hash,
                                                      seller_sessions.c.revoked_at.is_(None))
                        .values(revoked_at=clock.now()))


def forget_stale(session: Session) -> int:
    """Links and sessions past their end by a day are worth nothing: each new link sweeps them (two
    index range deletes, nearly always empty)."""
    horizon = clock.now() - timedelta(days=1)
    gone = session.execute(delete(sign_in_links).where(sign_in_links.c.expires_at < horizon)).rowcount
    return gone + session.execute(delete(seller_sessions).where(seller_sessions.c.expires_at < horizon)).rowcount
