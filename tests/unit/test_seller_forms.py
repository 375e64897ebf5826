"""The seller's forms as the API's bodies, by table: what a seller types becomes the body the API
takes, or names the field to correct; the API's use case judges the rest."""
import pytest

from services.catalog.seller_forms import (OFFER_FIELD_WORDS, counter_offer_body, field_words, major_units,
                                           minor_units, offer_body, utc_instant)


@pytest.mark.parametrize("text, currency, units", [
    ("12.50", "usd", 1250), ("12.5", "usd", 1250), ("12", "usd", 1200), (" 1,299.99 ", "usd", 129999),
    ("1200", "jpy", 1200), ("0.01", "usd", 1), ("1.234", "kwd", 1234),
    ("12.505", "usd", None),   # more decimals than cents
    ("12.5", "jpy", None),     # yen has none
    ("0", "usd", None), ("0.00", "usd", None), ("-5", "usd", None), ("+5", "usd", None),
    ("1e3", "usd", None), ("NaN", "usd", None), ("", "usd", None), ("12.50 $", "usd", None),
    ("21474836.47", "usd", 2**31 - 1), ("21474836.48", "usd", None),  # what an INTEGER column holds
    ("9" * 30, "usd", None),
])
def test_minor_units_by_table(text, currency, units):
    assert minor_units(text, currency) == units


@pytest.mark.parametrize("minor, currency, text", [(1250, "usd", "12.50"), (1200, "jpy", "1200"), (1, "usd", "0.01")])
def test_major_units_is_what_minor_units_reads_back(minor, currency, text):
    assert major_units(minor, currency) == text and minor_units(text, currency) == minor


@pytest.mark.parametrize("text, instant", [
    ("2030-01-31T18:00", "2030-01-31T18:00:00+00:00"),          # datetime-local: read as UTC, as labelled
    ("2030-01-31 18:00:30", "2030-01-31T18:00:30+00:00"),
    ("2030-01-31T18:00+09:00", "2030-01-31T18:00:00+09:00"),    # an offset given is kept
    ("", None), ("tomorrow", "invalid"), ("2030-13-01T00:00", "invalid"),
])
def test_utc_instant_by_table(text, instant):
    assert utc_instant(text) == instant


def test_an_offer_form_becomes_the_apis_body_and_names_what_cannot():
    body, faulty = offer_body({"title": "Kettle", "currency": "USD", "unit_price": "49.00", "minimum_reservations": "3",
                               "closes_at": "2030-01-31T18:00", "invite_at": "", "min_decrement": ""})
    assert body == {"title": "Kettle", "description": "", "currency": "usd", "unit_price": 4900,
                    "minimum_reservations": 3, "closes_at": "2030-01-31T18:00:00+00:00"} and faulty == set()
    body, faulty = offer_body({"currency": "usd", "unit_price": "free", "closes_at": "", "invite_at": "soon",
                               "min_decrement": "0"})
    assert faulty == {"unit_price", "closes_at", "invite_at", "min_decrement"}
    assert not faulty & set(body)


def test_a_counter_offer_form_becomes_the_apis_body():
    assert counter_offer_body({"unit_price": "47.99", "minimum_reservations": "2"}, "usd") == (
        {"unit_price": 4799, "minimum_reservations": 2}, set())
    assert counter_offer_body({"unit_price": "47.999", "minimum_reservations": "two"}, "usd")[1] == {
        "unit_price", "minimum_reservations"}


def test_field_words_name_each_field_or_else_the_form():
    assert field_words({"title", "unknown_field"}, OFFER_FIELD_WORDS) == {"title": [OFFER_FIELD_WORDS["title"]]}
    assert field_words({"body"}, OFFER_FIELD_WORDS) == {"form": [OFFER_FIELD_WORDS["form"]]}
