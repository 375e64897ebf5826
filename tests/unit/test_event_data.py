"""Event.to_data without dataclasses.asdict (shared/events.as_data): the same JSON for every shape an
event has (nested parts, lists of parts, instants, optional fields), and no value shared with the event."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from services.reservation.events import Purchaser, ReservationAccepted, ReservationsFinalised, ReservedOffer
from shared import clock
from shared.events import Event, as_data


def asdict_data(part) -> dict:
    """What to_data was: dataclasses.asdict, instants as ISO 8601 UTC."""
    return dataclasses.asdict(part, dict_factory=lambda pairs: {
        k: clock.iso(v) if isinstance(v, datetime) else v for k, v in pairs})


@dataclass(frozen=True)
class Odd(Event):
    at: datetime
    tags: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    ratio: float = 0.5
    maybe: str | None = None


def test_as_data_is_what_asdict_gave_for_every_shape():
    at = datetime(2030, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    events = [
        ReservationAccepted(reservation_id="r", offer_id="o", name="Ann", email="a@x.org", cancel_token="t",
                            offer=ReservedOffer(title="Kettle", currency="usd", closes_at=at, unit_price=5,
                                                minimum_reservations=3, holder_name="H"),
                            status="pending", verify_token="v", revision=1),
        ReservationsFinalised(offer_id="o", final_count=2, reservations=[
            Purchaser(id="1", name="A", email="a@x.org", lang="ja"), Purchaser(id="2", name="B", email="b@x.org")]),
        Odd(at=at, tags=["a", 1], extra={"k": ["v"]}),
    ]
    for event in events:
        assert event.to_data() == asdict_data(event)
    assert events[0].to_data()["offer"]["closes_at"] == "2030-01-01T12:00:00+00:00"


def test_the_data_shares_no_mutable_value_with_the_event():
    event = Odd(at=datetime(2030, 1, 1, tzinfo=timezone.utc), tags=["a"], extra={"k": ["v"]})
    data = as_data(event)
    data["tags"].append("b")
    data["extra"]["k"].append("w")
    assert event.tags == ["a"] and event.extra == {"k": ["v"]}


@dataclasses.dataclass(frozen=True)
class _Part:
    at: datetime


@dataclasses.dataclass(frozen=True)
class _Reader:
    name: str
    parts: list[_Part]
    note: str = ""


def test_a_readers_annotations_are_resolved_once_not_for_every_event(monkeypatch):
    """read() is on every consumed event's path; resolving a reader's string annotations each time
    (typing.get_type_hints) was a tenth of the mailer's CPU planning confirmations."""
    import typing

    from shared import events

    resolved = []
    real = typing.get_type_hints
    monkeypatch.setattr(typing, "get_type_hints", lambda cls, *a, **k: resolved.append(cls) or real(cls, *a, **k))
    events._reader_fields.cache_clear()
    data = {"name": "n", "parts": [{"at": "2026-11-27T10:00:00+00:00"}], "ignored": 1}
    first = [events.read(_Reader, data) for _ in range(5)]
    assert first[0] == _Reader("n", [_Part(datetime.fromisoformat("2026-11-27T10:00:00+00:00"))], "")
    assert all(r == first[0] for r in first)
    assert resolved == [_Reader, _Part]  # once each, for five events
    try:
        events.read(_Reader, {"parts": []})
    except KeyError as exc:
        assert exc.args == ("name",)
    else:
        raise AssertionError("a required field missing from the data must be a KeyError")
