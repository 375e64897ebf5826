from marshmallow import RAISE, Schema, fields

from shared.validation import Email, Text


class ReservationCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    name = Text(max_length=100, required=True)
    email = Email(required=True)


class ReservationSchema(Schema):
    id = fields.String()
    offer_id = fields.String()
    status = fields.String()
    cancel_token = fields.String(metadata={"description": "Keep it: it cancels this reservation."})


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

    idempotency_key = fields.String(data_key="Idempotency-Key", load_default=None)


class CancelHeaderSchema(Schema):
    class Meta:
        unknown = "exclude"

    cancel_token = fields.String(data_key="X-Cancel-Token", load_default=None)
