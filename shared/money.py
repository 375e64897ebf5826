"""Money is an integer of the currency's minor unit; babel knows ISO 4217 exponents and formats."""
from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from babel.numbers import format_currency, get_currency_precision, list_currencies

# Amounts are stored as SQL INTEGER: 2**31 - 1 minor units ($21.4 million, ¥2.1 billion) a unit.
MAX_MINOR_UNITS = 2**31 - 1

CURRENCIES = frozenset(code.lower() for code in list_currencies())


def exponent(currency: str) -> int:
    """Minor-unit digits: usd 2, jpy 0, kwd 3."""
    return get_currency_precision(currency.upper())


@lru_cache(maxsize=65536)  # babel's formatting is ~0.1 ms a call; pages format the same prices again and again
def format_money(minor_units: int, currency: str, locale: str = "en_US") -> str:
    amount = Decimal(minor_units).scaleb(-exponent(currency))
    return format_currency(amount, currency.upper(), locale=locale)
