"""Rate limits hold across gunicorn workers and replicas (two reservation replicas here)."""
from __future__ import annotations

import http.client
import json
import re

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import own_system
from tests.support import Cobuy, in_one_window, unique_email


@pytest.fixture
def limited_system(servers, mailbox, output_dir, tmp_path):
    with own_system(servers, mailbox, tmp_path, output_dir / "cobuy-up-limited.log",
                    ["--scale", "reservation=2", "--web-workers", "2"],
                    COBUY_RATE_LIMIT="reservations=5/minute;registrations=3/minute;sign_ins=3/minute") as running:
        yield running


def test_limits_per_client_address_answer_429_with_retry_after(limited_system):
    cobuy = Cobuy(limited_system.base_url)
    in_one_window(20)
    statuses = [cobuy.post("/api/v1/sellers", json={"name": "S", "email": unique_email()}) for _ in range(5)]
    assert [r.status_code for r in statuses] == [201, 201, 201, 429, 429]
    limited = statuses[3]
    assert limited.json()["code"] == "rate_limited" and 1 <= int(limited.headers["Retry-After"]) <= 60

    # the seller's other calls are not limited by the registration limit
    seller = statuses[0].json()
    offers = [cobuy.create_offer(seller) for _ in range(3)]
    url = cobuy.url(f"/api/v1/offers/{offers[0]['id']}/reservations")
    in_one_window(20)
    with ThreadPoolExecutor(10) as pool:  # spread over two replicas and their workers
        codes = list(pool.map(lambda e: requests.post(url, json={"name": "R", "email": e}, timeout=30).status_code,
                              [unique_email() for _ in range(10)]))
    assert sorted(codes) == [201] * 5 + [429] * 5

    # not per e-mail: a stranger could otherwise lock a purchaser out by using their address (SPEC §7);
    # the same purchaser from six client addresses reserves six offers
    more = offers + [cobuy.create_offer(seller) for _ in range(3)]
    email = unique_email("busy")
    codes = [_post_from(f"127.0.0.{10 + i}", limited_system.port, f"/api/v1/offers/{o['id']}/reservations",
                        {"name": "Busy", "email": email}) for i, o in enumerate(more)]
    assert codes == [201] * 6

    # two replicas, two gunicorn workers each, one metrics view: every accepted reservation counted once
    metrics = requests.get(f"http://127.0.0.1:{limited_system.port + 2}/metrics", timeout=10).text
    accepted = re.search(r'^cobuy_reservations_total\{outcome="accepted"\} (\S+)$', metrics, re.M)
    assert accepted and float(accepted.group(1)) == 11.0
    assert len(limited_system.pids("services.reservation.app")) >= 2 * 3  # 2 masters with 2 workers each


def _post_from(source_ip: str, port: int, path: str, body: dict) -> int:
    """A request from another loopback address: another client, as the gateway sees it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source_ip, 0))
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        return connection.getresponse().status
    finally:
        connection.close()


class _From(requests.adapters.HTTPAdapter):
    """A requests session from another loopback address: another client, cookies and all."""

    def __init__(self, source_ip: str):
        self.source_ip = source_ip
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, source_address=(self.source_ip, 0), **kwargs)


def _ask_sign_in_link_from(source_ip: str, base_url: str, email: str) -> int:
    browser = requests.Session()
    browser.mount("http://", _From(source_ip))
    form = browser.get(f"{base_url}/sellers/sign-in", timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    return browser.post(f"{base_url}/sellers/sign-in", data={"email": email, "csrf_token": token},
                        timeout=30).status_code


def test_sign_in_links_are_limited_per_address_and_per_client(limited_system, mailbox):
    cobuy = Cobuy(limited_system.base_url)
    seller = cobuy.post("/api/v1/sellers", json={"name": "S", "email": unique_email("limited")}).json()
    # one address from four clients: a stranger cannot flood a seller's inbox with links
    in_one_window(20)
    codes = [_ask_sign_in_link_from(f"127.0.0.{20 + i}", cobuy.base_url, seller["email"]) for i in range(4)]
    assert codes == [200, 200, 200, 429]
    # one client, four addresses nobody registered: it cannot sweep addresses, and unknown ones count alike
    in_one_window(20)
    codes = [_ask_sign_in_link_from("127.0.0.30", cobuy.base_url, unique_email("unknown")) for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert len(mailbox.wait(3, to=seller["email"], subject="sign-in link", timeout=60)) == 3
