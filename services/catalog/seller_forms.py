"""The seller's forms as the API's bodies, and the API's refusals in a seller's words. Pure, no I/O.

A page never judges an offer or a counter-offer itself: it turns what the seller typed (a price
such as 12.50, an instant in UTC) into the body the API takes, and the API's use case decides
(one rule, one place). Only a value that cannot even become such a body is refused here.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l

from shared.money import CURRENCIES, MAX_MINOR_UNITS, exponent

OFFER_FIELD_WORDS = {
    "title": _l("Give a title: 1 to 200 characters, on one line."),
    "description": _l("The description may be up to 5,000 characters."),
    "currency": _l("Give a currency code such as usd, eur or jpy."),
    "unit_price": _l("Give the unit price as an amount such as 12.50 (more than zero)."),
    "minimum_reservations": _l("Give the minimum as a whole number of reservations, from 1 to 1,000,000."),
    "closes_at": _l("Give a closing time in the future, such as 2030-01-31 18:00 (UTC)."),
    "invite_at": _l("The invitation must fall after now and before the closing time (or leave it empty)."),
    "min_decrement": _l("Give the price step as an amount more than zero, such as 0.01 (or leave it empty)."),
    "form": _l("The offer could not be published. Please check the form."),
}
COUNTER_FIELD_WORDS = {
    "unit_price": _l("Give your unit price as an amount such as 12.50 (more than zero)."),
    "minimum_reservations": _l("Give the minimum as a whole number of reservations, from 1."),
}
CHECK_THE_FORM = _l("Please check the form.")


def minor_units(text: str, currency: str) -> int | None:
    """'12.50' usd → 1250, '1200' jpy → 1200; None for anything that is not such an amount
    (more decimals than the currency has, a sign, an exponent, out of range)."""
    text = (text or "").strip().replace(",", "")
    if not text or len(text) > 20 or not all(c.isdigit() or c == "." for c in text):
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    digits = exponent(currency) if currency.lower() in CURRENCIES else 2
    units = amount.scaleb(digits)
    if units != units.to_integral_value() or not 0 < units <= MAX_MINOR_UNITS:
        return None
    return int(units)


def major_units(minor: int, currency: str) -> str:
    """1250 usd → '12.50': how a price is prefilled in a form (no currency sign, no grouping)."""
    digits = exponent(currency) if currency.lower() in CURRENCIES else 2
    return f"{Decimal(minor).scaleb(-digits):.{digits}f}"


def utc_instant(text: str) -> str | None:
    """A datetime-local value ('2030-01-31T18:00') read as UTC, or an ISO instant with its offset,
    as the API's ISO string; '' → None (not given); anything else → 'invalid'."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        return "invalid"
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()


def whole_number(text: str) -> int | str:
    text = (text or "").strip()
    return int(text) if text.isdigit() and len(text) <= 9 else text


def offer_body(form: dict) -> tuple[dict, set[str]]:
    """(the body for POST /api/v1/offers, fields that cannot become one)."""
    currency = (form.get("currency") or "").strip().lower()
    body: dict = {"title": form.get("title", ""), "description": form.get("description", ""), "currency": currency,
                  "minimum_reservations": whole_number(form.get("minimum_reservations", ""))}
    faulty = set()
    for field in ("unit_price", "min_decrement"):
        text = (form.get(field) or "").strip()
        if field == "min_decrement" and not text:
            continue
        body[field] = minor_units(text, currency)
        if body[field] is None:
            faulty.add(field)
    for field in ("closes_at", "invite_at"):
        value = utc_instant(form.get(field, ""))
        if value == "invalid" or (value is None and field == "closes_at"):
            faulty.add(field)
        elif value is not None:
            body[field] = value
    return {k: v for k, v in body.items() if k not in faulty}, faulty


def counter_offer_body(form: dict, currency: str) -> tuple[dict, set[str]]:
    """(the body for POST /api/v1/offers/{id}/counter-offers, fields that cannot become one)."""
    price = minor_units(form.get("unit_price", ""), currency)
    minimum = whole_number(form.get("minimum_reservations", ""))
    faulty = {f for f, v in (("unit_price", price), ("minimum_reservations", minimum)) if not isinstance(v, int)}
    return {"unit_price": price, "minimum_reservations": minimum}, faulty


def field_words(fields, words: dict) -> dict[str, list[str]]:
    """The API's (or the form's) faulty fields, each with its plain words; the form as a whole
    when none of them is one the form shows."""
    shown = {f: [words[f]] for f in fields if f in words and f != "form"}
    return shown or {"form": [words.get("form", CHECK_THE_FORM)]}
