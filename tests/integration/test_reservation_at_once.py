"""A new reservation on PostgreSQL is two statements (reservations._reserve_at_once): the same row,
the same event and the same answers as the general path, and the close cut still wins against it."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from services.reservation import reservations as use_cases
from services.reservation.tables import MIGRATIONS, outbox, reservations
from shared import db
from shared.migrations import upgrade
from shared.problems import Problem
from tests.infra import postgres_schema
from tests.use_cases import SECRET, T0, offer_published, recorded


@pytest.fixture
def sessions(servers, at):
    with postgres_schema(servers, "at_once", "the two-statement path is PostgreSQL's") as (engine, schema):
        at(T0 + timedelta(minutes=1))
        upgrade(engine, MIGRATIONS, schema)
        sessions = db.session_factory(engine)
        with sessions.begin() as session:
            use_cases.on_offer_published(session, offer_published("o1"))
            use_cases.on_offer_published(session, offer_published("o2", verify_emails=True))
        yield sessions


@pytest.fixture
def general_path_refused(monkeypatch):
    """The general path's insert fails the test: a new reservation must not need it."""
    def refused(*_args, **_kwargs):
        raise AssertionError("a new reservation took the general path")

    monkeypatch.setattr(use_cases, "_claim", refused)


THROUGH = {"bind": "session"}


@pytest.fixture(autouse=True, params=["session", "connection"])
def through(request):
    """The API reserves on a bare Connection (an ORM Session is made on its transaction only when
    the general path runs); other callers pass a Session. Every test here runs both ways."""
    THROUGH["bind"] = request.param
    yield request.param
    THROUGH["bind"] = "session"


def reserve(sessions, email="ann@example.org", offer_id="o1", key=None):
    if THROUGH["bind"] == "connection":
        with sessions.kw["bind"].begin() as connection:
            return use_cases.reserve(connection, offer_id, "Ann", email, key, SECRET, "ja")
    with sessions.begin() as session:
        return use_cases.reserve(session, offer_id, "Ann", email, key, SECRET, "ja")


def rows(sessions) -> list:
    with sessions() as session:
        return session.execute(select(reservations).order_by(reservations.c.revision)).all()


def test_a_new_reservation_is_one_row_and_its_event_as_the_general_path_makes_them(sessions, general_path_refused):
    answer, status = reserve(sessions, "Ann@Example.org")
    assert status == 201
    assert answer == {"id": answer["id"], "offer_id": "o1", "status": "active",
                      "cancel_token": use_cases.cancel_token(SECRET, answer["id"])}
    [row] = rows(sessions)
    assert (row.id, row.email, row.email_key, row.status, row.revision, row.lang, row.name) == \
        (answer["id"], "Ann@Example.org", "ann@example.org", "active", 1, "ja", "Ann")
    [event] = recorded(sessions, outbox, "ReservationAccepted")
    assert (event.producer, event.version) == ("reservation", 1)
    assert event.data == {
        "reservation_id": row.id, "offer_id": "o1", "name": "Ann", "email": "Ann@Example.org",
        "cancel_token": answer["cancel_token"], "lang": "ja", "status": "active", "verify_token": None,
        "revision": 1,
        "offer": {"title": "Kettle", "currency": "usd", "closes_at": (T0 + timedelta(minutes=10)).isoformat(),
                  "unit_price": 5000, "minimum_reservations": 3, "holder_name": "First"},
    }


def test_a_repeat_and_a_return_after_a_cancel_are_answered_as_before(sessions):
    first, _ = reserve(sessions)
    repeat, repeat_status = reserve(sessions, "ANN@example.org")
    assert (repeat, repeat_status) == (first, 200)
    with sessions.begin() as session:
        use_cases.cancel(session, first["id"], first["cancel_token"], SECRET)
    again, again_status = reserve(sessions)
    assert (again, again_status) == (first, 201)
    assert [r.revision for r in rows(sessions)] == [3]
    assert [e.data["revision"] for e in recorded(sessions, outbox, "ReservationAccepted")] == [1, 3]


def test_on_a_verified_offer_it_is_pending_and_its_link_confirms_it(sessions, general_path_refused):
    answer, status = reserve(sessions, offer_id="o2")
    assert (answer["status"], status) == ("pending", 201)
    [event] = recorded(sessions, outbox, "ReservationAccepted")
    assert event.data["verify_token"] == use_cases.verify_token(SECRET, answer["id"], 1)
    with sessions.begin() as session:
        confirmed = use_cases.verify(session, answer["id"], event.data["verify_token"], SECRET)
    assert confirmed["status"] == "active"


def test_an_unknown_offer_and_a_closed_one_are_refused_and_nothing_is_written(sessions, at):
    with pytest.raises(use_cases.OfferUnknown):
        reserve(sessions, offer_id="nope")
    at(T0 + timedelta(minutes=10))
    with pytest.raises(Problem) as refused:
        reserve(sessions)
    assert (refused.value.status, refused.value.code) == (409, "offer_closed")
    assert rows(sessions) == [] and recorded(sessions, outbox) == []


def _waiting_for_the_lock(sessions, offer_id: str) -> bool:
    key = db.lock_key("offer", offer_id) & 0xFFFFFFFFFFFFFFFF
    with sessions() as session:
        return bool(session.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid::bigint = :high AND objid::bigint = :low"), {"high": key >> 32, "low": key & 0xFFFFFFFF}
        ).scalar())


def test_a_reservation_that_waited_for_the_close_cut_sees_the_offer_closed(sessions):
    """Its first statement began before the cut committed, so it read the offer open: the insert,
    a later statement, must see the cut, and the reservation be refused (not counted after the list)."""
    outcome: dict = {}

    def reserving():
        try:
            outcome["answer"] = reserve(sessions)
        except Problem as problem:
            outcome["problem"] = problem

    with sessions.begin() as cutting:
        use_cases.cut(cutting, "o1")  # holds the offer's lock exclusively until it commits
        thread = threading.Thread(target=reserving)
        thread.start()
        deadline = time.monotonic() + 10
        while not _waiting_for_the_lock(sessions, "o1"):
            assert time.monotonic() < deadline, "the reservation never waited for the cut"
            time.sleep(0.01)
    thread.join(timeout=10)
    assert "answer" not in outcome
    assert (outcome["problem"].status, outcome["problem"].code) == (409, "offer_closed")
    assert rows(sessions) == [] and recorded(sessions, outbox, "ReservationAccepted") == []


def test_a_keyed_request_takes_the_general_path_and_its_key_replays_the_first_answer(sessions):
    first, status = reserve(sessions, key="key-1")
    assert status == 201
    assert reserve(sessions, "ANN@example.org", key="key-1") == (first, 201)
    assert [r.id for r in rows(sessions)] == [first["id"]]
    assert len(recorded(sessions, outbox, "ReservationAccepted")) == 1


def _terminate(servers, backends: list[int]) -> None:
    from sqlalchemy import create_engine

    admin = create_engine(servers[0].replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for backend in backends:
            connection.exec_driver_sql("SELECT pg_terminate_backend(%(pid)s)", {"pid": backend})
    admin.dispose()
    time.sleep(0.3)


def test_a_connection_dropped_under_the_two_statements_is_reported_as_sqlalchemy_reports_it(sessions, servers):
    """The API retries a reservation whose connection was lost (`_reconnecting`: is_disconnect) and the
    pool must not hand that connection out again: the two statements run on the driver's cursor, and
    a dropped connection must still come out of them as SQLAlchemy's error, flagged, the connection
    invalidated (not only later, when the transaction's rollback fails on it)."""
    from sqlalchemy.exc import DBAPIError

    engine = sessions.kw["bind"]
    with engine.connect() as connection:
        connection.begin()
        _terminate(servers, [connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()])
        with pytest.raises(DBAPIError) as raised:
            use_cases.reserve(connection, "o1", "Ann", "ann@example.org", None, SECRET, "ja")
        assert db.is_disconnect(raised.value), raised.value
        assert connection.invalidated
        assert "ann@example.org" not in str(raised.value)  # the engine hides values: e-mails, tokens
        connection.rollback()
    answer, status = reserve(sessions)  # on a live connection: the pool dropped the dead one
    assert status == 201 and [r.email for r in rows(sessions)] == ["ann@example.org"]


def test_a_failing_insert_names_its_statement_but_not_its_values(sessions):
    """The insert's values are a purchaser's e-mail and an event carrying her cancel token: an error
    (logged, answered as a 500) names the SQL, never them, as the engine's hide_parameters promises."""
    from sqlalchemy.exc import DBAPIError

    engine = sessions.kw["bind"]
    with pytest.raises(DBAPIError) as raised:
        with engine.begin() as connection:  # a language longer than its column: the API refuses it first
            use_cases.reserve(connection, "o1", "Ann", "ann@example.org", None, SECRET, "x" * 40)
    message = str(raised.value)
    assert "INSERT INTO reservations" in message
    assert "ann@example.org" not in message and "cancel_token" not in message and "x" * 40 not in message
    assert rows(sessions) == []


def test_a_database_restart_costs_the_api_one_retry_not_one_for_every_pooled_connection(sessions, servers):
    """Found by a red-team review. A restart or a failover drops every server connection while the
    pool holds several checked in moments ago (not pinged: shared.db._ping_when_idle). The first
    failure must invalidate the whole pool, as SQLAlchemy's own error handling does, so that the
    API's second attempt (`_reconnecting`) gets a new connection and not the next dead one."""
    from services.reservation.api import _reconnecting

    engine = sessions.kw["bind"]
    held = [engine.connect() for _ in range(4)]
    backends = [connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() for connection in held]
    for connection in held:
        connection.close()
    _terminate(servers, backends)

    def run():
        with engine.begin() as connection:
            return use_cases.reserve(connection, "o1", "Ann", "ann@example.org", None, SECRET, "ja")

    assert _reconnecting(run)[1] == 201
    with sessions() as session:
        assert len(session.execute(select(outbox)).all()) == 1
    assert [r.email for r in rows(sessions)] == ["ann@example.org"]


def test_a_connection_not_yet_in_a_transaction_begins_one_as_sqlalchemy_would(sessions):
    """Found by a red-team review: SQLAlchemy begins a transaction on a Connection's first statement
    (autobegin), and `commit()` then commits it; the two statements must do the same, or a caller
    that commits as it goes is answered 201 with nothing stored."""
    engine = sessions.kw["bind"]
    with engine.connect() as connection:
        answer, status = use_cases.reserve(connection, "o1", "Ann", "ann@example.org", None, SECRET, "ja")
        connection.commit()
    assert status == 201 and [r.email for r in rows(sessions)] == ["ann@example.org"]


def test_an_error_that_is_not_the_databases_comes_out_as_itself(sessions):
    """Found by a red-team review: a value the driver cannot send (a lone surrogate) is the caller's
    own error, as exec_driver_sql gives it, not a database error; the transaction goes on."""
    engine = sessions.kw["bind"]
    with engine.begin() as connection:
        with pytest.raises(UnicodeEncodeError):
            db.driver_row(connection, "SELECT %(p)s AS p", {"p": "a\ud800b"})
        assert db.driver_row(connection, "SELECT %(p)s AS p", {"p": "ab"}).p == "ab"
