"""Rate limits are per client (SPEC §6, §7): a stranger who uses a purchaser's e-mail address must
not be able to lock that purchaser out of reserving ("no sequence of requests may stop anything")."""
from __future__ import annotations

import pytest

from tests.conftest import own_system
from tests.e2e.test_edge import raw_request
from tests.support import Cobuy, in_one_window, unique_email


@pytest.fixture
def limited_system(servers, mailbox, output_dir, tmp_path):
    with own_system(servers, mailbox, tmp_path, output_dir / "cobuy-up-red-limits.log", [],
                    COBUY_RATE_LIMIT="reservations=3/minute", COBUY_TRUSTED_PROXIES="127.0.0.1/32") as running:
        yield running


def test_a_stranger_using_a_purchasers_address_does_not_lock_the_purchaser_out(limited_system):
    cobuy = Cobuy(limited_system.base_url)
    seller = cobuy.register_seller()
    offers = [cobuy.create_offer(seller)["id"] for _ in range(4)]
    victim = unique_email("victim")

    def reserve(offer_id: str, client: str) -> int:
        return raw_request(limited_system.port, "POST", f"/api/v1/offers/{offer_id}/reservations",
                           {"name": "Pat", "email": victim}, {"X-Forwarded-For": client})[0]

    in_one_window(10)  # the limiter counts per clock minute: keep the whole story in one
    # a stranger (one client address) sends the victim's address as often as its own limit lets it
    assert [reserve(offers[i], "203.0.113.9") for i in range(3)] == [201, 201, 201]
    assert reserve(offers[3], "203.0.113.9") == 429
    # the purchaser, from an address of their own, reserves once
    assert reserve(offers[3], "198.51.100.7") == 201
