"""What the end-to-end tests drive: a running cobuy, its HTTP API, and the mail that arrives."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Callable

import requests

from shared.smtpsink import SmtpSink

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05, what: str = ""):
    """Poll until predicate() is truthy; returns its value, or fails with what it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def at_once(count: int, send: Callable[[], object]) -> list:
    """`count` calls of send() from as many threads, released together by a barrier (a double
    click, a retrying client, a burst)."""
    from concurrent.futures import ThreadPoolExecutor

    barrier = threading.Barrier(count)

    def one(_):
        barrier.wait()
        return send()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@dataclass
class Mail:
    message: EmailMessage
    recipients: list[str]
    at: float

    @property
    def subject(self) -> str:
        return self.message["Subject"]

    @property
    def to(self) -> str:
        return self.recipients[0].lower()

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content().replace("\r\n", "\n")

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content().replace("\r\n", "\n")


class MailBox:
    """An aiosmtpd sink that keeps what arrives; `respond` may answer some mails with an error."""

    def __init__(self, port: int):
        self.mails: list[Mail] = []
        self.lock = threading.Lock()
        self.respond: Callable[[EmailMessage, list[str]], str | None] | None = None
        self.sink = SmtpSink("127.0.0.1", port, on_message=self._receive)

    def _receive(self, message: EmailMessage, recipients: list[str]) -> str | None:
        if self.respond is not None:
            verdict = self.respond(message, recipients)
            if verdict:
                return verdict
        with self.lock:
            self.mails.append(Mail(message, recipients, time.time()))
        return None

    def matching(self, to: str | None = None, subject: str | None = None, text: str | None = None) -> list[Mail]:
        with self.lock:
            mails = list(self.mails)
        return [m for m in mails
                if (to is None or m.to == to.lower())
                and (subject is None or subject in m.subject)
                and (text is None or text in m.text)]

    def wait(self, count: int = 1, timeout: float = 15.0, **criteria) -> list[Mail]:
        wait_for(lambda: len(self.matching(**criteria)) >= count, timeout, what=f"{count} mail(s) {criteria}")
        return self.matching(**criteria)


def in_one_window(needed: float, period: int = 60) -> None:
    """The rate limits count per fixed clock window (shared/ratelimit.py): a run of requests that
    crossed a window's end would start counting again halfway (seen in CI: the fourth sign-in of a run
    answered 200). Start a run only with `needed` seconds of its window left."""
    left = period - time.time() % period
    if left < needed:
        time.sleep(left + 0.05)


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def instant(seconds_from_now: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)).isoformat()


@dataclass
class Cobuy:
    """A client of one running cobuy, through its gateway."""

    base_url: str
    http: requests.Session = field(default_factory=requests.Session)
    sellers: list[dict] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path, **kw):
        return self.http.get(self.url(path), timeout=30, **kw)

    def post(self, path, **kw):
        return self.http.post(self.url(path), timeout=30, **kw)

    def delete(self, path, **kw):
        return self.http.delete(self.url(path), timeout=30, **kw)

    @staticmethod
    def auth(seller: dict) -> dict:
        return {"Authorization": f"Bearer {seller['api_key']}"}

    def register_seller(self, name: str | None = None, email: str | None = None, **extra) -> dict:
        reply = self.post("/api/v1/sellers", json={"name": name or f"Seller {uuid.uuid4().hex[:6]}",
                                                   "email": email or unique_email("seller"), **extra})
        assert reply.status_code == 201, reply.text
        seller = reply.json()
        self.sellers.append(seller)
        return seller

    def create_offer(self, seller: dict, **overrides) -> dict:
        body = {"title": f"Offer {uuid.uuid4().hex[:6]}", "currency": "usd", "unit_price": 10_000,
                "minimum_reservations": 3, "closes_at": instant(3600)}
        body.update(overrides)
        reply = self.post("/api/v1/offers", json=body, headers=self.auth(seller))
        assert reply.status_code == 201, reply.text
        return reply.json()

    def offer(self, offer_id: str) -> dict:
        reply = self.get(f"/api/v1/offers/{offer_id}")
        assert reply.status_code == 200, reply.text
        return reply.json()

    def reserve(self, offer_id: str, email: str | None = None, name: str = "Pat Purchaser", **kw):
        return self.post(f"/api/v1/offers/{offer_id}/reservations",
                         json={"name": name, "email": email or unique_email("buyer")}, **kw)

    def counter(self, seller: dict, offer_id: str, unit_price: int, minimum: int):
        return self.post(f"/api/v1/offers/{offer_id}/counter-offers",
                         json={"unit_price": unit_price, "minimum_reservations": minimum}, headers=self.auth(seller))

    def home_showing(self, *texts: str, timeout: float = 3.0) -> str:
        """The home page once it shows every text (it is re-rendered at most twice a second)."""
        return self.page_showing("/", *texts, timeout=timeout)

    def page_showing(self, path: str, *texts: str, timeout: float = 3.0) -> str:
        """A page once it shows every text (pages are re-rendered at most twice a second)."""
        return wait_for(lambda: (lambda page: page if all(t in page for t in texts) else None)(self.get(path).text),
                        timeout, what=f"{path} to show {texts}")

    def wait_offer(self, offer_id: str, predicate: Callable[[dict], bool], timeout: float = 10.0,
                   what: str = "") -> dict:
        return wait_for(lambda: (lambda o: o if predicate(o) else None)(self.offer(offer_id)), timeout,
                        what=what or "offer state")


@dataclass
class RunningSystem:
    """`cobuy up` as a user starts it, with this run's servers."""

    env: dict[str, str]
    log_path: Path
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    sellers: list[dict] = field(default_factory=list)  # every seller registered through the tests

    @property
    def port(self) -> int:
        return int(self.env["COBUY_HTTP_PORT"])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def operator_url(self) -> str:
        """Where the gateway answers /metrics, /readyz and /healthz (COBUY_OPERATOR_PORT, else the public port)."""
        return f"http://127.0.0.1:{self.env.get('COBUY_OPERATOR_PORT') or self.port}"

    def start(self, timeout: float = 120.0) -> "RunningSystem":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "cobuy.cli", "up", *self.args], env=self.env,
                                        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"cobuy up exited with {self.process.returncode}; see {self.log_path}")
            try:
                return requests.get(self.operator_url + "/readyz?services=all", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, timeout, interval=0.3, what="cobuy up to be ready")
        return self

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def config(self):
        """This system's configuration, read as its processes read it."""
        from shared import config as config_module

        saved = dict(os.environ)
        for name in [k for k in os.environ if k.startswith("COBUY_")]:  # CI's server URLs are not an embedded system's
            del os.environ[name]
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("COBUY_")})
        try:
            return config_module.load()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def runtime(self, service: str):
        """A service's own database, as this system configured it (for assertions only)."""
        from shared.runtime import Runtime

        return Runtime.create(service, self.config())

    def registered_seller_emails(self) -> set[str]:
        from sqlalchemy import select

        from services.catalog.tables import sellers

        runtime = self.runtime("catalog")
        try:
            with runtime.sessions() as session:
                return set(session.execute(select(sellers.c.email)).scalars())
        finally:
            runtime.engine.dispose()

    def pids(self, pattern: str) -> list[int]:
        """Processes of this system whose command line contains `pattern`."""
        from tests.processes import descendants_matching

        return descendants_matching(self.process.pid, pattern)
