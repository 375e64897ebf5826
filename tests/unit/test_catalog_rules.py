"""catalog's term rule, by table: the invitation instant, or the field to correct."""
from datetime import datetime, timedelta, timezone

import pytest

from services.catalog.rules import Term, judge_term

OPENS = datetime(2030, 1, 1, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize("closes_at, invite_at, term", [
    (OPENS + 10 * HOUR, None, Term(invite_at=OPENS + 8 * HOUR)),        # the default: 20 % before the close
    (OPENS + 10 * HOUR, OPENS + HOUR, Term(invite_at=OPENS + HOUR)),     # a given one inside the term
    (OPENS, None, Term(faulty_field="closes_at")),                       # closing as it opens
    (OPENS - HOUR, OPENS + HOUR, Term(faulty_field="closes_at")),       # the close wins over the invitation
    (OPENS + 10 * HOUR, OPENS, Term(faulty_field="invite_at")),         # at the opening
    (OPENS + 10 * HOUR, OPENS + 10 * HOUR, Term(faulty_field="invite_at")),  # at the close
    (OPENS + 10 * HOUR, OPENS + 11 * HOUR, Term(faulty_field="invite_at")),  # after the close
])
def test_judge_term_by_table(closes_at, invite_at, term):
    assert judge_term(OPENS, invite_at, closes_at) == term
