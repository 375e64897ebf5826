"""The sellers' webhook API (SPEC §11): register, list, read, delete endpoints; the delivery log.

A seller sees only its own endpoints: another seller's is answered 404, as one that does not exist.
"""
from __future__ import annotations

import base64
import secrets
import uuid

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from shared import clock
from shared.db import advisory_lock, lock_key
from shared.problems import Problem
from shared.validation import StrictInteger
from shared.web import require_seller

from ..planning import deliverable, one_line
from . import network
from .rules import EVENT_TYPES, URL_LENGTH, Refused
from .tables import attempts, endpoints, messages

MAX_ENDPOINTS = 10  # per seller
webhooks_bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks",
                        description="Webhooks: events pushed to a seller's system, signed per Standard Webhooks")


class EndpointCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    url = fields.String(required=True, validate=validate.Length(min=1, max=URL_LENGTH),
                        metadata={"description": "https:// only; it must resolve to public addresses"})
    events = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)), required=True,
                         validate=validate.Length(min=1, max=len(EVENT_TYPES)))


class EndpointSchema(Schema):
    id = fields.String()
    url = fields.String()
    events = fields.List(fields.String())
    created_at = fields.DateTime()
    disabled_at = fields.DateTime(allow_none=True)


class RegisteredEndpointSchema(EndpointSchema):
    secret = fields.String(metadata={"description": "whsec_…: shown once; sign-checks every delivery"})


class EndpointListSchema(Schema):
    items = fields.List(fields.Nested(EndpointSchema))


class AttemptSchema(Schema):
    message_id = fields.String(metadata={"description": "the webhook-id header: the same on every retry"})
    event_type = fields.String()
    attempted_at = fields.DateTime()
    status = fields.Integer(allow_none=True, metadata={"description": "HTTP status; null when none came"})
    latency_ms = fields.Integer()
    error = fields.String(allow_none=True)
    response = fields.String(allow_none=True, metadata={"description": "the first 1 KiB of the answer"})


class AttemptListSchema(Schema):
    items = fields.List(fields.Nested(AttemptSchema))


class AttemptQuerySchema(Schema):
    limit = StrictInteger(load_default=100, validate=validate.Range(min=1, max=500))


def new_secret() -> str:
    """Standard Webhooks: `whsec_` + base64 of 24-64 random bytes; we use 32."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _sessions():
    return current_app.extensions["cobuy.runtime"].sessions


def _settings():
    config = current_app.config["COBUY"]
    return config.webhook_allow_http, config.webhook_allow_private


def _public(row) -> dict:
    return {"id": row.id, "url": row.url, "events": row.events.split(), "created_at": row.created_at,
            "disabled_at": row.disabled_at}


def _own(session: Session, seller_id: str, endpoint_id: str):
    row = session.execute(select(endpoints).where(endpoints.c.id == endpoint_id,
                                                  endpoints.c.seller_id == seller_id)).first()
    if row is None:
        raise Problem(404, "webhook_not_found", "No such webhook endpoint.")
    return row


@webhooks_bp.route("")
class Endpoints(MethodView):
    @webhooks_bp.arguments(EndpointCreateSchema)
    @webhooks_bp.response(201, RegisteredEndpointSchema)
    def post(self, body):
        """Register an endpoint; its signing secret is shown once."""
        seller = require_seller()
        allow_http, allow_private = _settings()
        try:
            network.checked(body["url"], allow_http, allow_private)
        except Refused as exc:
            raise Problem(422, exc.code, exc.detail) from None
        email = seller.get("email")
        if not deliverable(email):
            raise Problem(422, "seller_email_unusable", "Your e-mail address cannot be told if the endpoint fails.")
        endpoint = {"id": str(uuid.uuid4()), "seller_id": seller["id"], "seller_name": one_line(seller.get("name")),
                    "seller_email": email, "url": body["url"], "events": " ".join(dict.fromkeys(body["events"])),
                    "secret": new_secret(), "created_at": clock.now()}
        with _sessions().begin() as session:
            advisory_lock(session, lock_key("webhooks", seller["id"]))  # the limit holds under a burst
            count = session.execute(select(func.count()).select_from(endpoints)
                                    .where(endpoints.c.seller_id == seller["id"])).scalar_one()
            if count >= MAX_ENDPOINTS:
                raise Problem(409, "too_many_webhooks", f"A seller may register at most {MAX_ENDPOINTS} endpoints.")
            session.execute(insert(endpoints).values(endpoint))
        return ({**endpoint, "events": endpoint["events"].split(), "disabled_at": None}, 201,
                {"Location": f"/api/v1/webhooks/{endpoint['id']}"})

    @webhooks_bp.response(200, EndpointListSchema)
    def get(self):
        """The caller's endpoints (without their secrets)."""
        seller = require_seller()
        with _sessions()() as session:
            rows = session.execute(select(endpoints).where(endpoints.c.seller_id == seller["id"])
                                   .order_by(endpoints.c.created_at, endpoints.c.id)).all()
        return {"items": [_public(r) for r in rows]}


@webhooks_bp.route("/<endpoint_id>")
class EndpointResource(MethodView):
    @webhooks_bp.response(200, EndpointSchema)
    def get(self, endpoint_id):
        """One of the caller's endpoints."""
        seller = require_seller()
        with _sessions()() as session:
            return _public(_own(session, seller["id"], endpoint_id))

    @webhooks_bp.response(204)
    def delete(self, endpoint_id):
        """Delete an endpoint, its undelivered messages and its log."""
        seller = require_seller()
        with _sessions().begin() as session:
            _own(session, seller["id"], endpoint_id)
            for table in (messages, attempts):
                session.execute(delete(table).where(table.c.endpoint_id == endpoint_id))
            session.execute(delete(endpoints).where(endpoints.c.id == endpoint_id))
        return None


@webhooks_bp.route("/<endpoint_id>/deliveries")
class Deliveries(MethodView):
    @webhooks_bp.arguments(AttemptQuerySchema, location="query")
    @webhooks_bp.response(200, AttemptListSchema)
    def get(self, query, endpoint_id):
        """The delivery log: each attempt, newest first."""
        seller = require_seller()
        with _sessions()() as session:
            _own(session, seller["id"], endpoint_id)
            rows = session.execute(select(attempts).where(attempts.c.endpoint_id == endpoint_id)
                                   .order_by(attempts.c.id.desc()).limit(query["limit"])).all()
        return {"items": [dict(r._mapping) for r in rows]}
