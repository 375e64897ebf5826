"""What crosses catalog's HTTP API, as marshmallow schemas (and so the OpenAPI document)."""
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from shared.money import CURRENCIES, MAX_MINOR_UNITS
from shared import languages
from shared.validation import Email, StrictInteger, Text, UTCInstant

MAX_PRICE = MAX_MINOR_UNITS
MAX_MINIMUM = 1_000_000


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE  # mass assignment: a client never sets status, seller, counts or history


class SellerRegistrationSchema(StrictSchema):
    name = Text(max_length=100, required=True)
    email = Email(required=True)
    lang = fields.String(load_default=languages.DEFAULT, validate=validate.OneOf(languages.LANGUAGES),
                         metadata={"description": "The language of the seller's mails (invitations, interceptions)."})


class SellerSchema(Schema):
    id = fields.String()
    name = fields.String()
    email = fields.String()
    registered_at = fields.DateTime()
    lang = fields.String()


class RegisteredSellerSchema(SellerSchema):
    api_key = fields.String(metadata={"description": "Shown once; only its hash is stored."})


class OfferCreateSchema(StrictSchema):
    title = Text(max_length=200, required=True)
    description = Text(max_length=5000, min_length=0, multiline=True, load_default="")
    currency = fields.String(required=True, metadata={"description": "ISO 4217 code, e.g. usd, jpy"})
    unit_price = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_PRICE),
                               metadata={"description": "In the currency's minor unit (cents for usd)"})
    minimum_reservations = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_MINIMUM))
    closes_at = UTCInstant(required=True)
    invite_at = UTCInstant(load_default=None)
    min_decrement = StrictInteger(load_default=1, validate=validate.Range(min=1, max=MAX_PRICE))
    verify_emails = fields.Boolean(
        load_default=False, truthy={True}, falsy={False},
        metadata={"description": "Reservations stay pending until the purchaser opens the link in the "
                                 "confirmation e-mail; only confirmed ones count (SPEC §10)."})

    @validates("currency")
    def _known_currency(self, value: str, **_kwargs) -> None:
        if value.lower() not in CURRENCIES:
            raise ValidationError("Unknown currency: give an ISO 4217 code such as usd or jpy.")


class ConditionSchema(Schema):
    seller_id = fields.String()
    seller_name = fields.String()
    unit_price = fields.Integer()
    minimum_reservations = fields.Integer()
    since = fields.DateTime()


class HistoryEntrySchema(Schema):
    seller_id = fields.String()
    seller_name = fields.String()
    unit_price = fields.Integer()
    minimum_reservations = fields.Integer()
    at = fields.DateTime()
    kind = fields.String(validate=validate.OneOf(["initial", "voluntary", "invited"]))


class OfferSchema(Schema):
    id = fields.String()
    title = fields.String()
    description = fields.String()
    currency = fields.String()
    status = fields.String(validate=validate.OneOf(["open", "closed"]))
    outcome = fields.String(allow_none=True)
    opens_at = fields.DateTime()
    invite_at = fields.DateTime()
    invited = fields.Boolean()
    closes_at = fields.DateTime()
    min_decrement = fields.Integer()
    condition = fields.Nested(ConditionSchema)
    offering_seller_id = fields.String()
    reservation_count = fields.Integer()
    verify_emails = fields.Boolean()
    history = fields.List(fields.Nested(HistoryEntrySchema))


class OfferListQuerySchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(["open", "closed"]), load_default=None)
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class OfferListSchema(Schema):
    items = fields.List(fields.Nested(OfferSchema))
    page = fields.Integer()
    per_page = fields.Integer()
    total = fields.Integer()
