"""catalog's sellers: register them, find them by key or id, rotate a key."""
from __future__ import annotations

import secrets
import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import clock, languages
from shared.identity import hash_api_key
from shared.outbox import record_event
from shared.problems import Problem

from . import SERVICE
from .events import SellerRegistered
from .tables import outbox, sellers


def register_seller(session: Session, name: str, email: str, lang: str = languages.DEFAULT) -> dict:
    api_key = "cb_" + secrets.token_urlsafe(32)
    seller = {
        "id": str(uuid.uuid4()),
        "name": name,
        "email": email.lower(),
        "api_key_hash": hash_api_key(api_key),
        "registered_at": clock.now(),
        "lang": lang,
    }
    if session.execute(select(sellers.c.id).where(sellers.c.email == seller["email"])).first():
        raise Problem(409, "email_taken", "A seller with this e-mail is already registered.")
    try:
        with session.begin_nested():
            session.execute(sellers.insert().values(**seller))
    except IntegrityError:
        raise Problem(409, "email_taken", "A seller with this e-mail is already registered.") from None
    record_event(session, outbox, SERVICE,
                 SellerRegistered(seller["id"], name, seller["email"], seller["registered_at"], lang))
    return {**public_seller(seller), "api_key": api_key}


def public_seller(row) -> dict:
    row = dict(row._mapping) if hasattr(row, "_mapping") else row
    return {"id": row["id"], "name": row["name"], "email": row["email"], "registered_at": row["registered_at"],
            "lang": row["lang"]}


def seller_by_key(session: Session, api_key: str) -> dict | None:
    row = session.execute(select(sellers).where(sellers.c.api_key_hash == hash_api_key(api_key))).first()
    return public_seller(row) if row else None


def seller_by_id(session: Session, seller_id: str) -> dict | None:
    row = session.execute(select(sellers).where(sellers.c.id == seller_id)).first()
    return public_seller(row) if row else None


def rotate_key(session: Session, email: str) -> str | None:
    """Operator action: the old key stops working, the new one is returned once."""
    return _rotate(session, sellers.c.email == email.lower())


def rotate_own_key(session: Session, seller_id: str) -> str | None:
    """The seller's own action on the dashboard, as the operator's above."""
    return _rotate(session, sellers.c.id == seller_id)


def _rotate(session: Session, which) -> str | None:
    api_key = "cb_" + secrets.token_urlsafe(32)
    result = session.execute(update(sellers).where(which).values(api_key_hash=hash_api_key(api_key)))
    return api_key if result.rowcount else None
