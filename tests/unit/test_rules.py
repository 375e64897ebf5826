"""SPEC §2's comparison, the close decision and the invitation date, by table."""
from datetime import datetime, timedelta, timezone

import pytest

from services.auction.rules import (
    Condition,
    Verdict,
    accepts_counter_offers,
    close_outcome,
    counter_offer_kind,
    is_better_than,
    judge_counter_offer,
    what_would_win,
)
from services.catalog.rules import default_invite_at

HOLDING = Condition("holder", unit_price=1000, minimum_reservations=10)


@pytest.mark.parametrize(
    "counter, min_decrement, offer_open, verdict",
    [
        (Condition("rival", 990, 10), 10, True, Verdict.BETTER),            # a full price step lower
        (Condition("rival", 500, 3), 10, True, Verdict.BETTER),             # much lower price and minimum
        (Condition("rival", 991, 10), 10, True, Verdict.NOT_BETTER),        # step smaller than min_decrement
        (Condition("rival", 1000, 9), 10, True, Verdict.BETTER),            # same price, lower minimum
        (Condition("rival", 1000, 10), 10, True, Verdict.NOT_BETTER),       # a tie keeps the holder
        (Condition("rival", 1001, 1), 1, True, Verdict.NOT_BETTER),         # dearer, even with a lower minimum
        (Condition("rival", 995, 9), 10, True, Verdict.NOT_BETTER),         # cheaper by less than a step, lower min
        (Condition("rival", 900, 11), 10, True, Verdict.RAISES_MINIMUM),    # may not make the deal harder
        (Condition("holder", 900, 10), 10, True, Verdict.ALREADY_HOLDER),   # the holder bidding against itself
        (Condition("rival", 900, 10), 10, False, Verdict.OFFER_CLOSED),     # closed offer
        (Condition("holder", 900, 11), 10, False, Verdict.OFFER_CLOSED),    # closed wins over every other refusal
    ],
)
def test_judge_counter_offer_by_table(counter, min_decrement, offer_open, verdict):
    assert judge_counter_offer(counter, HOLDING, min_decrement, offer_open) is verdict


def test_counter_offer_at_equal_price_keeps_holder():
    assert not is_better_than(Condition("rival", 1000, 10), HOLDING, 1)


def test_min_decrement_of_one_makes_any_lower_price_better():
    assert is_better_than(Condition("rival", 999, 10), HOLDING, 1)


@pytest.mark.parametrize("count, minimum, outcome", [(0, 1, "failed"), (2, 3, "failed"), (3, 3, "concluded"),
                                                     (10, 3, "concluded")])
def test_close_outcome(count, minimum, outcome):
    assert close_outcome(count, minimum) == outcome


def test_counter_offer_kind_is_voluntary_before_the_invitation_date_and_invited_from_it():
    invite_at = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    assert counter_offer_kind(invite_at - timedelta(microseconds=1), invite_at) == "voluntary"
    assert counter_offer_kind(invite_at, invite_at) == "invited"


def test_counter_offers_stop_at_closes_at():
    closes = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    assert accepts_counter_offers("open", closes - timedelta(seconds=1), closes)
    assert not accepts_counter_offers("open", closes, closes)
    assert not accepts_counter_offers("closing", closes - timedelta(seconds=1), closes)


def test_invitation_defaults_to_the_last_fifth_of_the_term():
    opens = datetime(2026, 1, 1, tzinfo=timezone.utc)
    closes = opens + timedelta(days=10)
    assert default_invite_at(opens, closes) == opens + timedelta(days=8)


def test_the_injected_clock_moves_time_for_the_pages():
    from shared import clock
    from services.catalog.pages import time_left_words

    closes = datetime(2030, 1, 1, 12, tzinfo=timezone.utc)
    try:
        clock.set_clock(lambda: closes - timedelta(hours=2, minutes=5))
        assert time_left_words(closes) == "2 h 5 min left"
        clock.set_clock(lambda: closes + timedelta(seconds=1))
        assert time_left_words(closes) == "closing now"
    finally:
        clock.set_clock(None)


@pytest.mark.parametrize("price, minimum, step, expected", [
    (1000, 5, 10, (990, 4)),
    (1000, 1, 10, (990, None)),   # no lower minimum exists
    (10, 5, 10, (None, 4)),       # no price below one minor unit
    (11, 5, 10, (1, 4)),
])
def test_a_refused_seller_is_told_the_price_and_the_minimum_that_would_win(price, minimum, step, expected):
    hints = what_would_win(Condition("h", price, minimum), step)
    assert (hints["price_to_beat"], hints["minimum_to_beat"]) == expected
    if expected[0] is not None:
        assert is_better_than(Condition("c", expected[0], minimum), Condition("h", price, minimum), step)
        assert not is_better_than(Condition("c", expected[0] + 1, minimum), Condition("h", price, minimum), step)
    if expected[1] is not None:
        assert is_better_than(Condition("c", price, expected[1]), Condition("h", price, minimum), step)
