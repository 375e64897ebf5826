"""The operator's tools against the running system's real database and broker, metrics summed
across gunicorn workers, and one correlation id from the gateway into the mail log."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid

import requests
from kombu import Producer

from tests.support import ROOT, unique_email, wait_for


def cli(system, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **{k: v for k, v in system.env.items() if k.startswith("COBUY_")}}
    return subprocess.run([sys.executable, "-m", "cobuy.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_one_correlation_id_runs_from_the_request_into_the_mail_log(cobuy, system, mailbox):
    offer = cobuy.create_offer(cobuy.register_seller())
    email = unique_email("traced")
    correlation = uuid.uuid4().hex
    reply = cobuy.reserve(offer["id"], email, headers={"X-Correlation-Id": correlation})
    assert reply.headers["X-Correlation-Id"] == correlation
    mailbox.wait(1, to=email)
    listed = cli(system, "mail", "list", "--to", email)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["correlation_id"] == correlation and row["state"] == "sent" and row["template"] == "reservation_accepted"


def test_mail_retry_queues_failed_mails_again(cobuy, system, mailbox):
    offer = cobuy.create_offer(cobuy.register_seller())
    email = unique_email("bounce")
    mailbox.respond = lambda message, recipients: "550 5.1.1 mailbox unavailable" if recipients[0] == email else None
    try:
        cobuy.reserve(offer["id"], email)
        wait_for(lambda: json.loads(cli(system, "mail", "list", "--to", email, "--state", "failed").stdout), 15,
                 interval=0.5, what="the mail to fail")
    finally:
        mailbox.respond = None
    retried = cli(system, "mail", "retry")
    assert retried.returncode == 0 and re.match(r"[1-9]\d* mail\(s\) queued again", retried.stdout)
    mailbox.wait(1, to=email)
    assert json.loads(cli(system, "mail", "list", "--to", email).stdout)[0]["state"] == "sent"


def test_outbox_status_and_offers_list(cobuy, system):
    offer = cobuy.create_offer(cobuy.register_seller(), title="Listed by the operator")
    status = cli(system, "outbox", "status")
    assert status.returncode == 0
    report = json.loads(status.stdout)
    assert set(report) == {"catalog", "reservation", "auction"}
    assert all(v["pending"] >= 0 for v in report.values())
    wait_for(lambda: json.loads(cli(system, "outbox", "status").stdout)["catalog"]["pending"] == 0, 10, interval=0.5)
    offers = json.loads(cli(system, "offers", "list", "--status", "open").stdout)
    assert any(o["id"] == offer["id"] and o["title"] == "Listed by the operator" for o in offers)


def test_rotating_a_key_revokes_the_old_one(cobuy, system):
    seller = cobuy.register_seller()
    rotated = cli(system, "sellers", "rotate-key", seller["email"])
    assert rotated.returncode == 0
    new_key = rotated.stdout.strip()
    assert new_key.startswith("cb_") and new_key != seller["api_key"]
    assert cobuy.get("/api/v1/sellers/me", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200
    wait_for(lambda: cobuy.get("/api/v1/sellers/me", headers=cobuy.auth(seller)).status_code == 401, 15,
             interval=0.5, what="the old key to be refused (gateway cache: 10 s)")
    assert cli(system, "sellers", "rotate-key", "nobody@example.com").returncode == 1


def test_dead_letters_are_listed_and_replayed_after_a_fix(cobuy, system, mailbox):
    """A poison message and a valid event dead-lettered earlier: list shows both with reasons;
    replay sends them back; the valid one is applied, the poison one comes back to the DLQ."""
    from shared.envelope import Envelope
    from shared.messaging import Bus

    bus = Bus(system.config())
    email = unique_email("replayed")
    offer = cobuy.create_offer(cobuy.register_seller(), title="Replayed offer")
    secret = f"tok{uuid.uuid4().hex}"
    event = Envelope("ReservationCancelled", {"reservation_id": str(uuid.uuid4()), "offer_id": offer["id"],
                                               "name": "Replay", "email": email, "cancel_token": secret,
                                               "offer": {"title": "Replayed offer", "currency": "usd",
                                                         "closes_at": offer["closes_at"]}}, "test")
    with bus.connect() as connection:
        bus.declare(connection)
        dead = Producer(connection.channel(), exchange=bus.dead_exchange)
        dead.publish(event.to_dict(), routing_key="ReservationCancelled", serializer="json",
                     headers={"x-cobuy-error": "handler failed before the fix", "x-cobuy-consumer": "mailer"})
        poison = Producer(connection.channel(), exchange=bus.exchange)
        poison.publish({"not": "an envelope"}, routing_key="ReservationCancelled", serializer="json")
    listing = wait_for(lambda: (lambda items: items if len(items) >= 2 else None)(
        json.loads(cli(system, "dlq", "list").stdout)), 15, interval=0.5, what="two dead letters")
    reasons = " | ".join(i["error"] or "" for i in listing)
    assert "handler failed before the fix" in reasons and "malformed envelope" in reasons
    assert len(json.loads(cli(system, "dlq", "list").stdout)) == len(listing)  # listing leaves them queued
    assert secret not in cli(system, "dlq", "list").stdout and "[redacted]" in cli(system, "dlq", "list").stdout
    replayed = cli(system, "dlq", "replay")
    assert replayed.returncode == 0 and replayed.stdout.startswith(f"{len(listing)} message(s) replayed")
    mailbox.wait(1, to=email, subject="Cancelled")
    time.sleep(1)
    after = json.loads(cli(system, "dlq", "list").stdout)
    assert [i["error"] for i in after] == [i["error"] for i in listing if "malformed" in (i["error"] or "")]
    cli(system, "dlq", "replay")  # leave the queue as it was found


def test_metrics_sum_across_gunicorn_workers(cobuy, system):
    def reservations_accepted() -> float:
        text = cobuy.http.get(f"http://127.0.0.1:{system.port + 2}/metrics").text
        found = re.search(r'^cobuy_reservations_total\{outcome="accepted"\} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    before = reservations_accepted()
    offer = cobuy.create_offer(cobuy.register_seller())
    for _ in range(20):  # on fresh connections: the kernel spreads them over both workers
        assert cobuy.http.post(cobuy.url(f"/api/v1/offers/{offer['id']}/reservations"),
                               json={"name": "M", "email": unique_email()}, headers={"Connection": "close"}).status_code == 201
    assert reservations_accepted() - before == 20
    gateway = cobuy.get("/metrics").text
    assert re.search(r'cobuy_http_requests_total\{method="POST",route="reservation:api",status="201"\} \d', gateway)


def test_outbox_lag_is_a_metric_and_a_worker_serves_its_own_metrics(cobuy, system, tmp_path):
    wait_for(lambda: "cobuy_outbox_oldest_unsent_seconds" in cobuy.http.get(
        f"http://127.0.0.1:{system.port + 2}/metrics").text, 15, interval=0.5, what="the outbox lag gauge")
    port = __import__("tests.infra", fromlist=["free_port"]).free_port()
    env = {**os.environ, **{k: v for k, v in system.env.items() if k.startswith("COBUY_")},
           "COBUY_WORKER_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    worker = subprocess.Popen([sys.executable, "-m", "services.catalog.worker"], cwd=ROOT, env=env)
    try:
        body = wait_for(lambda: _get(f"http://127.0.0.1:{port}/metrics"), 20, interval=0.3, what="worker metrics")
        assert "cobuy_events_published_total" in body and "cobuy_outbox_pending" in body
    finally:
        worker.terminate()
        assert worker.wait(timeout=20) == 0  # stops cleanly on SIGTERM


def _get(url: str) -> str | None:
    try:
        return requests.get(url, timeout=2).text
    except requests.RequestException:
        return None


def test_migrate_is_idempotent(system):
    for _ in range(2):
        result = cli(system, "migrate")
        assert result.returncode == 0 and result.stdout.strip() == "migrated", result.stderr
