"""A broker outage is what the outbox rides out: with the broker refusing this system (its own vhost on
the local RabbitMQ: connections closed, permissions withdrawn), every service stays ready, reservations
are still accepted, the outboxes fill; when the broker returns they drain and the counts and mails arrive."""
from __future__ import annotations

import json
import subprocess

import pytest
import requests

from tests import infra
from tests.conftest import own_system
from tests.e2e.test_operations import cli
from tests.support import Cobuy, unique_email, wait_for

SERVICES = ("catalog", "reservation", "auction", "mailer")


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(params=["classic", "quorum"])
def isolated(request, servers, mailbox, output_dir, tmp_path):
    """(running system, its vhost): a vhost of its own, so taking the broker away touches no other test;
    on classic queues, and on quorum queues as production runs."""
    if servers[1] is None:
        pytest.skip("the embedded broker has no outage to simulate")
    with infra.own_vhost() as (amqp_url, prefix, vhost):
        with own_system((servers[0], amqp_url, prefix), mailbox, tmp_path, output_dir / f"cobuy-up-outage-{request.param}.log",
                        [], COBUY_AMQP_QUEUE_TYPE=request.param) as running:
            yield running, vhost


def pending(running) -> dict[str, int]:
    status = cli(running, "outbox", "status")
    assert status.returncode == 0, status.stderr
    return {service: report["pending"] for service, report in json.loads(status.stdout).items()}


def test_services_stay_ready_and_the_outbox_fills_then_drains_across_a_broker_outage(isolated, mailbox):
    running, vhost = isolated
    cobuy = Cobuy(running.base_url)
    offer = cobuy.create_offer(cobuy.register_seller())
    config = running.config()
    emails = [unique_email("outage") for _ in range(3)]
    try:
        rabbitmqctl("clear_permissions", "-p", vhost, "guest")
        rabbitmqctl("close_all_connections", "-p", vhost, "broker outage test")
        for email in emails:
            assert cobuy.reserve(offer["id"], email).status_code == 201
        for service in SERVICES:
            reply = requests.get(f"http://127.0.0.1:{config.service_port(service)}/readyz", timeout=5)
            assert reply.status_code == 200, (service, reply.text)
        assert pending(running)["reservation"] >= len(emails)
        assert not mailbox.matching(to=emails[0])
    finally:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    wait_for(lambda: not any(pending(running).values()), 60, interval=1, what="the outboxes to drain")
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == len(emails), timeout=30)
    for email in emails:
        mailbox.wait(1, to=email, timeout=30)
    assert set(infra.queue_types(vhost).values()) == {running.env["COBUY_AMQP_QUEUE_TYPE"]}
