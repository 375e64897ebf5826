"""Red-team probe of coalesced counts (services/reservation/recounts.py, the relay's follow-up in
shared/outbox.py): after a burst of reservations and cancels, a reservation worker SIGKILLed in
the middle of it, then silence, catalog's count of every offer is its active reservations."""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import own_system
from tests.support import Cobuy, unique_email, wait_for


@pytest.fixture
def two_reservation_workers(servers, mailbox, output_dir, tmp_path):
    with own_system(servers, mailbox, tmp_path, output_dir / "cobuy-up-red-counts.log",
                    ["--scale", "reservation=2", "--web-workers", "1", "--gateway-workers", "1", "--restart"],
                    COBUY_COUNT_INTERVAL_SECONDS="1.0") as running:
        yield running


def test_the_last_count_arrives_after_a_burst_cancels_and_a_killed_worker(two_reservation_workers):
    system = two_reservation_workers
    cobuy = Cobuy(system.base_url, sellers=system.sellers)
    holder = cobuy.register_seller()
    offers = [cobuy.create_offer(holder) for _ in range(6)]

    def burst(offer):
        made = [cobuy.reserve(offer["id"], unique_email("burst")) for _ in range(12)]
        assert all(r.status_code == 201 for r in made), [r.status_code for r in made]
        for r in made[:5]:
            assert cobuy.delete(f"/api/v1/reservations/{r.json()['id']}",
                                headers={"X-Cancel-Token": r.json()["cancel_token"]}).status_code == 204
        return 12 - 5

    with ThreadPoolExecutor(6) as pool:
        pending = [pool.submit(burst, o) for o in offers]
        time.sleep(0.4)
        victims = system.pids("services.reservation.worker")
        assert len(victims) == 2, victims
        os.kill(victims[0], signal.SIGKILL)
        expected = [p.result() for p in pending]
    for offer, count in zip(offers, expected):
        wait_for(lambda: cobuy.offer(offer["id"])["reservation_count"] == count, 20, interval=0.2,
                 what=f"offer {offer['id']} counted {count}")
    time.sleep(2.5)  # silence: nothing later changes it
    assert [cobuy.offer(o["id"])["reservation_count"] for o in offers] == expected
