"""COBUY_DATABASE_SEARCH_PATH=role: each service connects as its own role, whose search_path is set on
the role, and sends no startup option; so its connections survive PgBouncer in transaction mode."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from shared import clock, config as config_module, db, migrations
from tests import infra


@pytest.fixture
def cluster():
    """(admin engine on a database of this test's own, role prefix); the roles are dropped after."""
    with infra.postgres_database() as url:
        if url is None:
            pytest.skip("no PostgreSQL configured (COBUY_DATABASE_URL)")
        admin_url = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        prefix = f"cobuy_r{uuid.uuid4().hex[:6]}"
        roles = [f"{prefix}_{service}" for service in ("catalog", "reservation")]
        with admin.connect() as conn:
            for role in roles:
                conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
                conn.execute(text(f'GRANT CONNECT, CREATE ON DATABASE "{admin_url.database}" TO "{role}"'))
        try:
            yield admin, admin_url, prefix
        finally:
            with admin.connect() as conn:
                for role in roles:
                    conn.execute(text(f'DROP OWNED BY "{role}" CASCADE'))
                    conn.execute(text(f'DROP ROLE "{role}"'))
            admin.dispose()


def _role_url(admin_url, role: str, host: str | None = None, port: int | None = None) -> str:
    url = admin_url.set(username=role, password=None)
    if port:
        url = url.set(host=host, port=port)
    return url.render_as_string(hide_password=False)


def _reserve_through(engine, email: str) -> dict:
    from services.reservation import reservations as use_cases
    from services.reservation.tables import offers

    sessions = db.session_factory(engine)
    now = clock.now()
    with sessions.begin() as session:
        if session.execute(offers.select()).first() is None:
            session.execute(offers.insert().values(
                id="o1", title="Kettle", currency="usd", closes_at=now.replace(year=now.year + 1),
                holder_id="s1", holder_name="Sam", unit_price=100, minimum_reservations=2,
                condition_version=0, closed=False))
    with sessions.begin() as session:
        reservation, status = use_cases.reserve(session, "o1", "Ann", email, None, "secret")
    assert status == 201
    return reservation


def _tables_in(admin, schema: str) -> set[str]:
    with admin.connect() as conn:
        return set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}).scalars())


def test_a_service_in_role_mode_migrates_into_its_own_schema_and_takes_a_reservation(cluster):
    from services.catalog.tables import MIGRATIONS as CATALOG
    from services.reservation.tables import MIGRATIONS as RESERVATION

    admin, admin_url, prefix = cluster
    for service, folder in (("catalog", CATALOG), ("reservation", RESERVATION)):
        engine = db.make_engine(_role_url(admin_url, f"{prefix}_{service}"), service, search_path="role")
        migrations.upgrade(engine, folder, service)
        with engine.connect() as conn:
            assert conn.execute(text("SHOW search_path")).scalar_one().strip('"') == service
            options = conn.connection.dbapi_connection.info.options
        assert "search_path" not in (options or "")
        if service == "reservation":
            reservation = _reserve_through(engine, "ann@example.com")
        engine.dispose()

    assert {"reservations", "offers", "alembic_version"} <= _tables_in(admin, "reservation")
    assert "reservations" not in _tables_in(admin, "catalog") and not _tables_in(admin, "public")
    with admin.connect() as conn:
        owners = dict(conn.execute(text(
            "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname IN ('catalog', 'reservation')")).all())
        stored = conn.execute(text("SELECT status FROM reservation.reservations WHERE id = :i"),
                              {"i": reservation["id"]}).scalar_one()
        settings = set(conn.execute(text(
            "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
            "WHERE r.rolname = :r"), {"r": f"{prefix}_reservation"}).scalars())
    assert owners == {"catalog": f"{prefix}_catalog", "reservation": f"{prefix}_reservation"}
    assert stored == "active"
    assert settings == {"search_path=reservation"}


def test_in_role_mode_a_service_cannot_read_another_services_schema(cluster):
    from services.reservation.tables import MIGRATIONS as RESERVATION

    admin, admin_url, prefix = cluster
    reservation = db.make_engine(_role_url(admin_url, f"{prefix}_reservation"), "reservation", search_path="role")
    migrations.upgrade(reservation, RESERVATION, "reservation")
    catalog = db.make_engine(_role_url(admin_url, f"{prefix}_catalog"), "catalog", search_path="role")
    with catalog.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
        conn.execute(text("SELECT count(*) FROM reservation.reservations"))
    reservation.dispose()
    catalog.dispose()


def test_role_mode_refuses_to_start_when_the_role_cannot_search_its_schema(cluster):
    admin, admin_url, prefix = cluster
    role = f"{prefix}_catalog"
    with admin.connect() as conn:  # someone else's schema of that name: the role cannot use it
        conn.execute(text('CREATE SCHEMA "catalog"'))
    with pytest.raises(db.RoleSearchPathError, match="ALTER ROLE"):
        db.make_engine(_role_url(admin_url, role), "catalog", search_path="role")


def test_each_service_may_have_its_own_database_url_and_role_mode_is_opt_in(monkeypatch, tmp_path):
    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COBUY_DATABASE_URL", "postgresql://cobuy@db/cobuy")
    monkeypatch.setenv("COBUY_CATALOG_DATABASE_URL", "postgresql://cobuy_catalog@pooler/cobuy")
    monkeypatch.delenv("COBUY_DATABASE_SEARCH_PATH", raising=False)
    config = config_module.load()
    assert config.database_search_path == "option"
    assert config.database_url_for("catalog") == "postgresql+psycopg://cobuy_catalog@pooler/cobuy"
    assert config.database_url_for("reservation") == "postgresql+psycopg://cobuy@db/cobuy"
    monkeypatch.setenv("COBUY_DATABASE_SEARCH_PATH", "role")
    assert config_module.load().database_search_path == "role"
    monkeypatch.setenv("COBUY_DATABASE_SEARCH_PATH", "user")
    with pytest.raises(ValueError, match="COBUY_DATABASE_SEARCH_PATH"):
        config_module.load()


# --- through a real PgBouncer in transaction mode ---------------------------------------------------

@pytest.fixture
def pgbouncer(cluster):
    binary = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed (apt-get install pgbouncer)")
        pytest.skip("pgbouncer is not installed")
    admin, admin_url, prefix = cluster
    port = infra.free_port()
    folder = tempfile.mkdtemp(prefix="cobuy-pgbouncer-")
    os.chmod(folder, 0o755)  # read by the user pgbouncer drops to when started as root
    users = os.path.join(folder, "users.txt")
    with open(users, "w") as f:
        f.writelines(f'"{prefix}_{s}" ""\n' for s in ("catalog", "reservation"))
    ini = os.path.join(folder, "pgbouncer.ini")
    with open(ini, "w") as f:
        f.write(f"""[databases]
{admin_url.database} = host={admin_url.host or '127.0.0.1'} port={admin_url.port or 5432} dbname={admin_url.database}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = 2
max_client_conn = 50
""")
    for name in (users, ini):
        os.chmod(name, 0o644)
    argv = [binary, ini] + (["-u", "nobody"] if os.geteuid() == 0 else [])
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"pgbouncer did not start: {process.stdout.read().decode()}")
                time.sleep(0.05)
        yield admin, admin_url, prefix, port
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def test_reservations_flow_through_pgbouncer_in_transaction_mode_in_role_mode(pgbouncer):
    from services.reservation.tables import MIGRATIONS as RESERVATION

    admin, admin_url, prefix, port = pgbouncer
    role = f"{prefix}_reservation"
    direct = db.make_engine(_role_url(admin_url, role), "reservation", search_path="role")
    migrations.upgrade(direct, RESERVATION, "reservation")  # the migration Job connects directly
    direct.dispose()

    pooled = db.make_engine(_role_url(admin_url, role, "127.0.0.1", port), "reservation",
                            pool_size=5, search_path="role")
    made = [_reserve_through(pooled, f"buyer{i}@example.com")["id"] for i in range(12)]
    clients = [pooled.connect() for _ in range(5)]  # five clients idle between transactions
    for conn in clients:
        conn.execute(text("SELECT 1"))
        conn.commit()

    with admin.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM reservation.reservations WHERE id = ANY(:ids)"),
                              {"ids": made}).scalar_one()
        backends = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE usename = :r"),
                                {"r": role}).scalar_one()
    for conn in clients:
        conn.close()
    pooled.dispose()
    assert stored == 12
    assert backends <= 2  # transaction pooling: five client connections share default_pool_size=2


def test_the_relays_idle_look_answers_through_pgbouncer_in_transaction_mode(pgbouncer):
    """The idle look (shared.outbox.IdleLook) is one query of four statements, BEGIN to COMMIT, on the
    driver's connection: through a transaction pooler it must still see the service's own outbox."""
    from services.reservation.tables import MIGRATIONS as RESERVATION, outbox
    from shared.outbox import IdleLook

    admin, admin_url, prefix, port = pgbouncer
    role = f"{prefix}_reservation"
    direct = db.make_engine(_role_url(admin_url, role), "reservation", search_path="role")
    migrations.upgrade(direct, RESERVATION, "reservation")
    direct.dispose()
    pooled = db.make_engine(_role_url(admin_url, role, "127.0.0.1", port), "reservation", pool_size=5,
                            search_path="role")
    try:
        look = IdleLook(pooled, outbox)
        assert look.empty()  # a look that failed would say "look properly", never "empty"
        _reserve_through(pooled, "idle@example.com")  # its ReservationAccepted is in line
        assert not look.empty()
        with pooled.begin() as conn:
            conn.execute(outbox.update().values(sent_at=clock.now()))
        assert look.empty()
    finally:
        pooled.dispose()


def test_the_startup_option_mode_does_not_survive_pgbouncer(pgbouncer):
    admin, admin_url, prefix, port = pgbouncer
    with pytest.raises(OperationalError, match="unsupported startup parameter"):
        db.make_engine(_role_url(admin_url, f"{prefix}_catalog", "127.0.0.1", port), "catalog")


def test_cobuy_migrate_in_role_mode_migrates_each_service_as_its_own_role(cluster, monkeypatch, tmp_path):
    """What the prod migration Job runs: COBUY_<SERVICE>_DATABASE_URL per service, role mode."""
    from cobuy.operations import migrate_all

    admin, admin_url, prefix = cluster
    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COBUY_DATABASE_SEARCH_PATH", "role")
    monkeypatch.setenv("COBUY_DATABASE_URL", admin_url.render_as_string(hide_password=False))
    for service in ("catalog", "reservation"):
        monkeypatch.setenv(f"COBUY_{service.upper()}_DATABASE_URL", _role_url(admin_url, f"{prefix}_{service}"))
    migrate_all(config_module.load(), ("catalog", "reservation"))
    with admin.connect() as conn:
        owners = set(conn.execute(text(
            "SELECT schemaname, tableowner FROM pg_tables WHERE schemaname IN ('catalog', 'reservation')")).all())
    assert owners == {("catalog", f"{prefix}_catalog"), ("reservation", f"{prefix}_reservation")}
