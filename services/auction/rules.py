"""The rules that decide the offer: pure, with no I/O (SPEC §2; STYLE habit 2)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum


@dataclass(frozen=True)
class Condition:
    seller_id: str
    unit_price: int
    minimum_reservations: int


class Verdict(str, Enum):
    BETTER = "better"
    NOT_BETTER = "not_better"
    ALREADY_HOLDER = "already_holder"
    RAISES_MINIMUM = "raises_minimum"
    OFFER_CLOSED = "offer_closed"


def is_better_than(counter: Condition, holding: Condition, min_decrement: int) -> bool:
    """Better by at least one price step, or at the same price with a lower minimum."""
    if counter.unit_price <= holding.unit_price - min_decrement:
        return True
    return (counter.unit_price == holding.unit_price
            and counter.minimum_reservations < holding.minimum_reservations)


def judge_counter_offer(counter: Condition, holding: Condition, min_decrement: int, offer_open: bool) -> Verdict:
    """The comparison means: refusals first, then better or not (a tie keeps the holder)."""
    if not offer_open:
        return Verdict.OFFER_CLOSED
    if counter.seller_id == holding.seller_id:
        return Verdict.ALREADY_HOLDER
    if counter.minimum_reservations > holding.minimum_reservations:
        return Verdict.RAISES_MINIMUM
    if is_better_than(counter, holding, min_decrement):
        return Verdict.BETTER
    return Verdict.NOT_BETTER


def what_would_win(holding: Condition, min_decrement: int) -> dict[str, int | None]:
    """For a refused seller: the highest unit price that wins at the holding minimum, and the
    highest minimum that wins at the holding price (None where nothing can)."""
    price = holding.unit_price - min_decrement
    minimum = holding.minimum_reservations - 1
    return {"price_to_beat": price if price >= 1 else None, "minimum_to_beat": minimum if minimum >= 1 else None}


def counter_offer_kind(at: datetime, invite_at: datetime) -> str:
    """Voluntary before the invitation date (claim 3), invited from then on."""
    return "voluntary" if at < invite_at else "invited"


def close_outcome(final_count: int, minimum_reservations: int) -> str:
    return "concluded" if final_count >= minimum_reservations else "failed"


def accepts_counter_offers(status: str, now: datetime, closes_at: datetime) -> bool:
    return status == "open" and now < closes_at
