"""The mailer against relays configured as operators configure them: STARTTLS required with AUTH and a
private CA passed by COBUY_SMTP_CA_FILE, implicit TLS (smtps://), and a wrong password, which is a clear
error in the log and in `cobuy mail list`, never a crash."""
from __future__ import annotations

import logging
import ssl
import subprocess
import uuid
from contextlib import nullcontext

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select

from cobuy.operations import mail_list
from services.mailer.delivery import Sender
from services.mailer.planning import Planner
from services.mailer.rendering import Renderer
from services.mailer.tables import MIGRATIONS, deliveries
from shared import config as config_module
from shared.config import SmtpSettings
from shared.envelope import Envelope
from shared.runtime import Runtime
from tests import infra
from tests.integration.test_mailer import OFFER, PUBLIC

USER, PASSWORD = "cobuy@relay.example", "p@ss:w/rd%"  # every character a URL must escape


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A private CA and a certificate it signed for 127.0.0.1, as a company's relay would have."""
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=cobuy test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "relay.key", "-out", "relay.csr",
            "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "relay.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "relay.pem", "-days", "2", "-extfile", "san.ext")
    return folder


class Relay:
    def __init__(self):
        self.received: list[tuple[str, list[str]]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 queued"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append(auth_data.login.decode())
        # handled=False: aiosmtpd answers the refusal itself (535)
        return AuthResult(success=(auth_data.login.decode(), auth_data.password.decode()) == (USER, PASSWORD),
                          handled=False)


def _server_context(certificates) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates / "relay.pem", certificates / "relay.key")
    return context


@pytest.fixture
def submission(certificates):
    """Port 587 as Postfix submission answers it: STARTTLS first, then AUTH, then mail."""
    relay = Relay()
    controller = Controller(relay, hostname="127.0.0.1", port=infra.free_port(), require_starttls=True,
                            tls_context=_server_context(certificates), authenticator=relay.authenticate,
                            auth_required=True)
    controller.start()
    yield relay, controller.port
    controller.stop()


@pytest.fixture
def implicit(certificates):
    relay = Relay()
    # aiosmtpd offers AUTH only after STARTTLS; over implicit TLS the connection is encrypted already
    controller = Controller(relay, hostname="127.0.0.1", port=infra.free_port(),
                            ssl_context=_server_context(certificates), authenticator=relay.authenticate,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    yield relay, controller.port
    controller.stop()


@pytest.fixture
def mailer(servers, tmp_path, monkeypatch):
    """The mailer's tables in a database of this test's own (a pending mail of another test is not ours)."""
    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    with (infra.postgres_database() if servers[0] else nullcontext()) as database:
        if database:
            monkeypatch.setenv("COBUY_DATABASE_URL", database)
        else:
            monkeypatch.delenv("COBUY_DATABASE_URL", raising=False)
        runtime = Runtime.create("mailer", config_module.load())
        runtime.migrate(MIGRATIONS)
        yield runtime
        runtime.engine.dispose()


def _send_one(runtime, relay_settings: SmtpSettings) -> str:
    email = f"ann-{uuid.uuid4().hex[:6]}@x.io"
    event = Envelope("ReservationCancelled", {"reservation_id": "r1", "offer_id": "off-1", "name": "Ann",
                                              "email": email, "offer": OFFER}, "reservation")
    with runtime.sessions.begin() as session:
        Planner("cobuy.example").handlers()[event.type](session, event)
    sender = Sender(runtime.sessions, Renderer("cobuy <no-reply@cobuy.example>", PUBLIC), relay_settings,
                    concurrency=1, lease_seconds=30)
    sender.deliver(sender.claim(), None)
    return email


def _row(runtime, email: str):
    with runtime.sessions() as session:
        return session.execute(select(deliveries).where(deliveries.c.recipient == email)).one()


def _url(scheme: str, port: int, password: str = PASSWORD, query: str = "") -> str:
    from urllib.parse import quote

    return f"{scheme}://{quote(USER, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}{query}"


def test_a_url_encoded_user_and_password_parse_apart_from_the_host():
    settings = SmtpSettings.parse(_url("smtps", 465))
    assert (settings.host, settings.port, settings.tls) == ("127.0.0.1", 465, "implicit")
    assert (settings.user, settings.password) == (USER, PASSWORD)
    assert SmtpSettings.parse("smtp://relay.example:587?starttls=required").tls == "starttls-required"
    assert SmtpSettings.parse("smtp://relay.example").port == 25
    assert PASSWORD not in repr(settings)


def test_starttls_and_auth_with_a_private_ca_deliver(mailer, submission, certificates):
    relay, port = submission
    settings = SmtpSettings.parse(_url("smtp", port, query="?starttls=required"),
                                  ca_file=str(certificates / "ca.pem"))
    email = _send_one(mailer, settings)
    assert _row(mailer, email).state == "sent"
    assert relay.received == [("no-reply@cobuy.example", [email])] and relay.logins == [USER]


def test_implicit_tls_with_user_and_password_from_their_own_variables_delivers(mailer, implicit, certificates,
                                                                                monkeypatch):
    relay, port = implicit
    monkeypatch.setenv("COBUY_SMTP_URL", f"smtps://127.0.0.1:{port}")
    monkeypatch.setenv("COBUY_SMTP_USER", USER)
    monkeypatch.setenv("COBUY_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("COBUY_SMTP_CA_FILE", str(certificates / "ca.pem"))
    email = _send_one(mailer, config_module.load().smtp())
    assert _row(mailer, email).state == "sent"
    assert relay.received == [("no-reply@cobuy.example", [email])]


def test_a_wrong_password_is_a_clear_error_in_the_log_and_the_mail_list_and_the_mail_waits(
        mailer, submission, certificates, caplog):
    relay, port = submission
    settings = SmtpSettings.parse(_url("smtp", port, password="wrong"), ca_file=str(certificates / "ca.pem"))
    with caplog.at_level(logging.ERROR, logger="services.mailer.delivery"):
        email = _send_one(mailer, settings)
    row = _row(mailer, email)
    assert row.state == "pending"  # retried with backoff once the Secret is fixed; nothing crashed
    assert "refused the user and password" in row.last_error and "wrong" not in row.last_error
    assert any("refused the user and password" in r.getMessage() for r in caplog.records)
    listed = mail_list(mailer.config, to=email)
    assert "refused the user and password" in listed[0]["last_error"]
    assert relay.received == []


def test_a_relay_whose_certificate_is_not_trusted_is_named_and_nothing_is_sent(mailer, submission):
    relay, port = submission
    email = _send_one(mailer, SmtpSettings.parse(_url("smtp", port)))  # the system's CAs only
    row = _row(mailer, email)
    assert row.state == "pending" and "COBUY_SMTP_CA_FILE" in row.last_error
    assert relay.received == [] and relay.logins == []
