"""reservation's schema moves forward without losing what earlier releases stored."""
from __future__ import annotations

import uuid

import pytest
from alembic import command
from sqlalchemy import select

from shared import clock, db
from shared.migrations import alembic_config


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path, servers):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/reservation.db"
    else:
        if servers[0] is None:
            pytest.skip("no PostgreSQL configured (COBUY_DATABASE_URL)")
        url = servers[0].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = db.make_engine(url, f"reservation_m{uuid.uuid4().hex[:6]}")
    yield engine
    engine.dispose()


def _migrate(engine, revision: str) -> None:
    from services.reservation.tables import MIGRATIONS

    cfg = alembic_config(MIGRATIONS)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def test_idempotency_keys_stored_by_the_previous_release_still_replay_after_the_upgrade(engine):
    from services.reservation import reservations as use_cases
    from services.reservation.tables import idempotency_keys, offers, reservations

    _migrate(engine, "0002")
    sessions = db.session_factory(engine)
    now = clock.now()
    with sessions.begin() as session:
        session.execute(offers.insert().values(
            id="o1", title="Kettle", currency="usd", closes_at=now.replace(year=now.year + 1), holder_id="s1",
            holder_name="Sam", unit_price=100, minimum_reservations=2, condition_version=0, closed=False))
        session.execute(reservations.insert().values(
            id="r1", offer_id="o1", name="Ann", email="Ann@Example.com", email_key="ann@example.com",
            status="active", idempotency_key="old-key", created_at=now))
    _migrate(engine, "head")
    with sessions.begin() as session:
        [bound] = session.execute(select(idempotency_keys)).all()
        assert (bound.offer_id, bound.key, bound.reservation_id) == ("o1", "old-key", "r1")
        replay, status = use_cases.reserve(session, "o1", "Ann", "ann@example.com", "old-key", "secret")
        assert (replay["id"], status) == ("r1", 201)
    with sessions.begin() as session, pytest.raises(use_cases.Problem) as refused:
        use_cases.reserve(session, "o1", "Eve", "eve@example.com", "old-key", "secret")
    assert refused.value.code == "idempotency_key_mismatch"
