"""Input hygiene shared by every service that takes text from people."""
from __future__ import annotations

import re
from datetime import timezone

from email_validator import EmailNotValidError, validate_email
from marshmallow import ValidationError, fields

# lone surrogates too: a JSON \udXXX escape decodes to one, and no database or mail can store it
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def reject_control_characters(value: str) -> None:
    if _CONTROL.search(value):
        raise ValidationError("Control characters (such as line breaks) are not allowed.")


class Text(fields.String):
    """A single-line string: trimmed, bounded, free of control characters."""

    def __init__(self, max_length: int, min_length: int = 1, multiline: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length
        self.min_length = min_length
        self.multiline = multiline

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        checked = text.replace("\n", "").replace("\r", "").replace("\t", "") if self.multiline else text
        reject_control_characters(checked)
        if not self.min_length <= len(text) <= self.max_length:
            raise ValidationError(f"Length must be between {self.min_length} and {self.max_length}.")
        return text


class Email(fields.String):
    """Syntax only: no DNS look-up (the site may run with no outbound DNS)."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        reject_control_characters(text)
        if len(text) > 254:
            raise ValidationError("An e-mail address is at most 254 characters.")
        try:
            # Only what any SMTP relay can carry: an international domain is kept in its ASCII
            # (punycode) form; a non-ASCII local part would need SMTPUTF8 end to end, so it is refused.
            checked = validate_email(text, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as exc:
            raise ValidationError(f"Not a valid e-mail address: {exc}") from None
        return checked.ascii_email or checked.normalized


class StrictInteger(fields.Integer):
    """A JSON integer: no strings, no floats, no booleans (money is never a float)."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("Not a valid integer.")
        return super()._deserialize(value, attr, data, **kwargs)


class UTCInstant(fields.AwareDateTime):
    """An instant with an offset that still names a date once in UTC (year 1 to 9999)."""

    def _deserialize(self, value, attr, data, **kwargs):
        instant = super()._deserialize(value, attr, data, **kwargs)
        try:
            return instant.astimezone(timezone.utc)
        except OverflowError:
            raise ValidationError("This instant is outside the calendar once in UTC.") from None
