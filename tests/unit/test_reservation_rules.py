"""reservation's rules, by table: when an offer is closed, what a reservation request does."""
from datetime import datetime, timedelta, timezone

import pytest

from services.reservation.rules import (
    Outcome,
    Verification,
    activates,
    initial_status,
    is_closed,
    reserve_outcome,
    verification,
)

CLOSES = datetime(2030, 1, 1, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("cut, now, closed", [
    (False, CLOSES - timedelta(microseconds=1), False),
    (False, CLOSES, True),              # the deadline closes it before the cut has run
    (True, CLOSES - timedelta(hours=1), True),  # the cut closes it whatever the clock says
])
def test_is_closed_by_table(cut, now, closed):
    assert is_closed(cut, CLOSES, now) is closed


@pytest.mark.parametrize("status_before, outcome, active_now", [
    (None, Outcome.ACCEPTED, True),
    ("cancelled", Outcome.REACTIVATED, True),
    ("active", Outcome.REPEAT, False),
    ("pending", Outcome.REPEAT, False),  # SPEC §10: a repeat of an unconfirmed one sends no second link
])
def test_reserve_outcome_by_table(status_before, outcome, active_now):
    assert reserve_outcome(status_before) is outcome
    assert activates(outcome) is active_now


@pytest.mark.parametrize("verify_emails, status", [(False, "active"), (True, "pending")])
def test_initial_status_by_table(verify_emails, status):
    assert initial_status(verify_emails) == status


@pytest.mark.parametrize("status, link_revision, revision, outcome", [
    ("pending", 1, 1, Verification.CONFIRMS),
    ("pending", 3, 3, Verification.CONFIRMS),            # re-reserved after a cancel: the new link
    ("pending", 1, 3, Verification.WRONG_LINK),          # the link of before the cancel
    ("pending", None, 1, Verification.WRONG_LINK),       # another reservation's link, or none
    ("active", 1, 2, Verification.ALREADY_CONFIRMED),    # used twice
    ("active", None, 2, Verification.WRONG_LINK),
    ("active", 2, 2, Verification.WRONG_LINK),           # no link is made for an active revision
    ("cancelled", 1, 2, Verification.NOT_PENDING),
    ("lapsed", 1, 2, Verification.NOT_PENDING),
    ("cancelled", 0, 2, Verification.WRONG_LINK),
])
def test_verification_by_table(status, link_revision, revision, outcome):
    assert verification(status, link_revision, revision) is outcome
