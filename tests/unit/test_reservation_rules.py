"""reservation's rules, by table: when an offer is closed, what a reservation request does."""
from datetime import datetime, timedelta, timezone

import pytest

from services.reservation.rules import Outcome, activates, is_closed, reserve_outcome

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
])
def test_reserve_outcome_by_table(status_before, outcome, active_now):
    assert reserve_outcome(status_before) is outcome
    assert activates(outcome) is active_now
