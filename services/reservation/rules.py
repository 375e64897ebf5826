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
    """Whether the request made a reservation active (and so is announced and counted)."""
    return outcome is not Outcome.REPEAT
