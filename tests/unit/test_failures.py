"""Failures sorted into 'wait it out' and 'set it aside', named without secrets; secrets kept 0600;
no correlation id that cannot travel gets into an event."""
from __future__ import annotations

import json
import socket
import stat
import struct

import pytest
import requests
from amqp import exceptions as amqp_errors
from kombu import exceptions as kombu_errors
from sqlalchemy import MetaData, select, text
from sqlalchemy import exc as sql_errors

from shared import config, db, logs
from shared.envelope import MalformedEnvelope
from shared.failures import Nacked, describe, is_transient
from shared.messaging import Unroutable
from shared.outbox import outbox_table, record_event

TOKEN = "3f9a1c0b7d2e4f6a8b9c0d1e2f3a4b5c6d7e8f90"


def _http_error(status: int) -> requests.HTTPError:
    reply = requests.Response()
    reply.status_code = status
    return requests.HTTPError(f"{status}", response=reply)


def _struct_error() -> struct.error:
    try:
        struct.pack("B", 300)
    except struct.error as exc:
        return exc


@pytest.mark.parametrize("exc, transient", [
    (requests.ConnectionError("catalog refused the connection"), True),
    (requests.Timeout("catalog took too long"), True),
    (_http_error(503), True),
    (_http_error(429), True),
    (_http_error(404), False),
    (requests.exceptions.InvalidURL("no"), False),
    (sql_errors.OperationalError("SELECT 1", {}, Exception("server closed the connection")), True),
    (sql_errors.TimeoutError("QueuePool limit reached"), True),
    (sql_errors.IntegrityError("INSERT", {}, Exception("duplicate key")), False),
    (sql_errors.ProgrammingError("INSERT", {}, Exception("no such table")), False),
    (ConnectionResetError(104, "Connection reset by peer"), True),
    (socket.timeout("timed out"), True),
    (TimeoutError("publishes unconfirmed"), True),
    (amqp_errors.ConnectionForced("broker shutdown"), True),
    (amqp_errors.RecoverableConnectionError("connection lost"), True),
    # the broker refusing this user (a withdrawn permission, a rotated password): the operator's to fix,
    # and the same event publishes unchanged once they have; never a reason to quarantine it
    (amqp_errors.NotAllowed("access to vhost 'cobuy' refused for user 'cobuy'"), True),
    (amqp_errors.AccessRefused("Login was refused"), True),
    (amqp_errors.PreconditionFailed("invalid arg"), False),
    (kombu_errors.OperationalError("cannot connect"), True),
    (Nacked("nacked"), True),
    (Unroutable("no queue is bound for X"), False),
    (_struct_error(), False),
    (kombu_errors.EncodeError("cannot serialise"), False),
    (KeyError("offer_id"), False),
    (ValueError("bad"), False),
    (TypeError("bad"), False),
    (MalformedEnvelope("missing id"), False),
    (json.JSONDecodeError("Expecting value", "{", 1), False),
])
def test_failures_are_transient_only_when_waiting_can_fix_them(exc, transient):
    assert is_transient(exc) is transient


def test_a_wrapped_transient_failure_is_transient():
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as inner:
            raise RuntimeError("publish failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_a_described_failure_names_its_class_and_ids_but_no_token_or_email():
    event_id = "9be37df6-7ed2-4006-b0c6-3ea2021b71fb"
    reason = describe(ValueError(f"event {event_id}: token {TOKEN} of ann@example.com on uq_reservation_offer_email"))
    assert reason.startswith("ValueError: ")
    assert event_id in reason and "uq_reservation_offer_email" in reason
    assert TOKEN not in reason and "ann@example.com" not in reason


def test_a_failing_statement_names_the_sql_but_not_its_values(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path}/x.db", "x")
    try:
        with pytest.raises(sql_errors.DBAPIError) as failure, engine.begin() as conn:
            conn.execute(text("INSERT INTO no_such_table (token) VALUES (:token)"), {"token": TOKEN})
        assert "no_such_table" in str(failure.value) and TOKEN not in str(failure.value)
    finally:
        engine.dispose()


def test_the_internal_secret_and_the_databases_under_the_data_dir_are_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv("COBUY_INTERNAL_SECRET", raising=False)
    secret = config._internal_secret(tmp_path)
    assert secret and stat.S_IMODE((tmp_path / "internal-secret").stat().st_mode) == 0o600
    engine = db.make_engine(f"sqlite:///{tmp_path}/reservation.db", "reservation")
    engine.dispose()
    assert stat.S_IMODE((tmp_path / "reservation.db").stat().st_mode) == 0o600


def test_an_internal_secret_left_readable_by_an_older_release_is_made_private(tmp_path, monkeypatch):
    monkeypatch.delenv("COBUY_INTERNAL_SECRET", raising=False)
    path = tmp_path / "internal-secret"
    path.write_text("old-secret")
    path.chmod(0o644)
    assert config._internal_secret(tmp_path) == "old-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("incoming, kept", [("req-42.a:b_c", True), ("x" * 64, True), ("x" * 65, False),
                                            ("", False), ("has space", False), ("é", False), (None, True)])
def test_an_event_keeps_a_correlation_id_only_when_it_can_travel(tmp_path, incoming, kept):
    outbox = outbox_table(MetaData())
    engine = db.make_engine(f"sqlite:///{tmp_path}/x.db", "x")
    outbox.metadata.create_all(engine)
    token = logs.set_correlation_id(incoming)
    try:
        with db.session_factory(engine).begin() as session:
            envelope = record_event(session, outbox, "test", "Tested", {})
            stored = json.loads(session.execute(select(outbox.c.body)).scalar_one())["correlation_id"]
    finally:
        logs.reset_correlation_id(token)
        engine.dispose()
    assert stored == envelope.correlation_id
    if kept:
        assert stored == incoming
    else:
        assert stored != incoming and 1 <= len(stored) <= 64
