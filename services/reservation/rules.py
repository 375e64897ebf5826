"""reservation's rules: when an offer takes no more reservations, and what a reservation request
does given what the purchaser already has. Pure, with no I/O (STYLE habit 2)."""
from __future__ import annotations

from datetime import datetime
from enum import Enum


def is_closed(cut: bool, closes_at: datetime, now: datetime) -> bool:
    """Closed once the close cut has run, and already from the deadline on, before the cut runs."""
    return cut or now >= closes_at


class Outcome(str, Enum):
    ACCEPTED = "accepted"        # no reservation of this e-mail yet: a new one
    REACTIVATED = "reactivated"  # cancelled earlier: the same reservation is active again
    REPEAT = "repeat"            # already active: the existing one, unchanged


def reserve_outcome(status_before: str | None) -> Outcome:
    """One reservation per (offer, e-mail): a repeat changes nothing, a return after a cancel
    makes the cancelled reservation active again."""
    if status_before is None:
        return Outcome.ACCEPTED
    if status_before == "cancelled":
        return Outcome.REACTIVATED
    return Outcome.REPEAT


def activates(outcome: Outcome) -> bool:
    """Whether the request made a reservation live again (and so is announced: counted at once, or
    once confirmed on an offer with verify_emails)."""
    return outcome is not Outcome.REPEAT


def initial_status(verify_emails: bool) -> str:
    """SPEC §10: on an offer with verify_emails a reservation is pending until the purchaser opens
    the link in the confirmation mail; only active ones count."""
    return "pending" if verify_emails else "active"


class Verification(str, Enum):
    CONFIRMS = "confirms"                  # pending, link of this cycle: it becomes active
    ALREADY_CONFIRMED = "already_confirmed"  # the link was used already
    NOT_PENDING = "not_pending"            # cancelled, or lapsed at the close
    WRONG_LINK = "wrong_link"              # not this reservation's link (or of an earlier cycle)


def verification(status: str, link_revision: int | None, revision: int) -> Verification:
    """What a verify link does. `link_revision`: the revision the link was made for (None: it is no
    link of this reservation); `revision`: the reservation's now. A link is made when the
    reservation becomes pending, and confirming raises the revision by one: so a link works once,
    and a link from before a cancel and a new reservation works no more."""
    if link_revision is None:
        return Verification.WRONG_LINK
    if status == "pending" and link_revision == revision:
        return Verification.CONFIRMS
    if status == "active" and link_revision == revision - 1:
        return Verification.ALREADY_CONFIRMED
    if status in ("cancelled", "lapsed") and link_revision == revision - 1:
        return Verification.NOT_PENDING
    return Verification.WRONG_LINK
