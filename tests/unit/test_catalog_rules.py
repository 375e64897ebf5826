"""catalog's term rule, by table: the invitation instant, or the field to correct."""
from datetime import datetime, timedelta, timezone

import pytest

from services.catalog.rules import Term, judge_term, safe_next

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


@pytest.mark.parametrize("asked, goes_to", [
    ("/dashboard/offers/1/counter-offer?unit_price=4799&minimum_reservations=2",
     "/dashboard/offers/1/counter-offer?unit_price=4799&minimum_reservations=2"),  # the mail's link, as it is
    ("/offers/abc", "/offers/abc"),
    (None, "/dashboard"), ("", "/dashboard"),
    ("//evil.example/x", "/dashboard"),          # scheme-relative: another site
    ("/\\evil.example", "/dashboard"),           # a browser reads \ as /
    ("https://evil.example/", "/dashboard"),
    ("javascript:alert(1)", "/dashboard"),
    ("dashboard", "/dashboard"),                 # relative: not a path of ours
    ("/a\r\nSet-Cookie: x=1", "/dashboard"),     # would break the Location header
    ("/caf\u00e9", "/dashboard"),
    ("/" + "a" * 500, "/dashboard"),             # over-long
])
def test_safe_next_by_table(asked, goes_to):
    assert safe_next(asked) == goes_to
