import re

from marshmallow import RAISE, Schema, fields, validate

from shared import languages
from shared.validation import Email, Text

IDEMPOTENCY_KEY = re.compile(r"\A[\x20-\x7e]{1,255}\Z")


class ReservationCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    name = Text(max_length=100, required=True)
    email = Email(required=True)
    lang = fields.String(load_default=languages.DEFAULT, validate=validate.OneOf(languages.LANGUAGES),
                         metadata={"description": "The language of the purchaser's mails (the page's, when "
                                                  "reserved from a page)."})


STATUSES = ["active", "pending", "cancelled", "lapsed"]


class ReservationSchema(Schema):
    id = fields.String()
    offer_id = fields.String()
    status = fields.String(metadata={"description": "active, or pending until the purchaser confirms the e-mail "
                                                    "(offers with verify_emails: only active ones count)"})
    cancel_token = fields.String(metadata={"description": "Keep it: it cancels this reservation."})


class ReservationStateSchema(Schema):
    id = fields.String()
    offer_id = fields.String()
    status = fields.String(validate=validate.OneOf(STATUSES))


class VerifySchema(Schema):
    class Meta:
        unknown = RAISE

    token = fields.String(required=True, validate=validate.Length(min=1, max=100),
                          metadata={"description": "The token of the verify link in the confirmation e-mail."})


class HolderReservationSchema(Schema):
    id = fields.String()
    name = fields.String()
    email = fields.String()
    at = fields.DateTime()


class HolderReservationListSchema(Schema):
    items = fields.List(fields.Nested(HolderReservationSchema))
    count = fields.Integer()


class IdempotencyHeaderSchema(Schema):
    class Meta:
        unknown = "exclude"

    idempotency_key = fields.String(
        data_key="Idempotency-Key", load_default=None,
        validate=validate.Regexp(IDEMPOTENCY_KEY, error="1 to 255 printable ASCII characters."),
        metadata={"description": "Retries with the same key and body return the first answer; "
                                 "the same key with another body is 422 idempotency_key_mismatch."})


class CancelHeaderSchema(Schema):
    class Meta:
        unknown = "exclude"

    cancel_token = fields.String(data_key="X-Cancel-Token", load_default=None)
