"""SPEC §10 on the real servers: verified reservations, price-drop mails, the holder's contact."""
from __future__ import annotations

import re
import threading
import time
from datetime import datetime

import pytest
import requests

from tests.conftest import own_system
from tests.support import Cobuy, instant, unique_email, wait_for

VERIFY_LINK = re.compile(r"(https?://[^\s]+/reservations/([0-9a-f-]+)/verify\?token=([0-9a-f]+))")


def verify_link(mailbox, email: str) -> tuple[str, str, str]:
    """(link, reservation id, token) of the confirmation mail to `email`."""
    [mail] = mailbox.wait(1, to=email, subject="Reserved:", timeout=60)
    return VERIFY_LINK.search(mail.text).groups()


def verify_by_api(cobuy, reservation_id: str, token: str) -> requests.Response:
    return cobuy.post(f"/api/v1/reservations/{reservation_id}/verify", json={"token": token})


def verify_by_page(cobuy, link_path: str) -> requests.Response:
    """What a purchaser without JavaScript does: open the link, press the button."""
    browser = requests.Session()
    page = browser.get(cobuy.url(link_path), timeout=30)
    assert page.status_code == 200 and "Confirm my reservation" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    return browser.post(cobuy.url(action), data={"csrf_token": csrf, "token": token}, timeout=30)


def reserve_by_form(cobuy, offer_id: str, email: str) -> requests.Response:
    browser = requests.Session()
    page = browser.get(cobuy.url(f"/offers/{offer_id}"), timeout=30)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return browser.post(cobuy.url(f"/offers/{offer_id}/reserve"),
                        data={"csrf_token": csrf, "name": "Form Purchaser", "email": email}, timeout=30)


# ---- verified reservations ------------------------------------------------------------------------

def test_verified_offer_reserve_three_confirm_two_counts_lists_and_concludes_two(cobuy, mailbox):
    holder = cobuy.register_seller(name="Verified Holder")
    title = f"Verified {holder['id'][:6]}"
    offer = cobuy.create_offer(holder, title=title, unit_price=3490, minimum_reservations=2, verify_emails=True,
                               invite_at=instant(7), closes_at=instant(9))
    assert offer["verify_emails"] is True
    buyers = [unique_email("verified") for _ in range(3)]
    form = reserve_by_form(cobuy, offer["id"], buyers[0])
    assert form.status_code == 200 and "Check your e-mail to confirm" in form.text
    for buyer in buyers[1:]:
        reply = cobuy.reserve(offer["id"], buyer)
        assert (reply.status_code, reply.json()["status"]) == (201, "pending")
    links = [verify_link(mailbox, b) for b in buyers]
    assert all("Until you do, it does not count" in m.text for b in buyers for m in mailbox.matching(to=b))
    done = verify_by_page(cobuy, links[0][0].split(cobuy.base_url, 1)[1])
    assert done.status_code == 200 and "is confirmed and counts now" in done.text
    assert verify_by_api(cobuy, links[1][1], links[1][2]).json()["status"] == "active"
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 2, what="the count of confirmed ones")
    cobuy.page_showing(f"/offers/{offer['id']}", "confirmed reservations")
    listed = cobuy.get(f"/api/v1/offers/{offer['id']}/reservations", headers=cobuy.auth(holder)).json()
    assert listed["count"] == 2 and {r["email"] for r in listed["items"]} == set(buyers[:2])
    closed = cobuy.wait_offer(offer["id"], lambda o: o["status"] == "closed", timeout=15, what="the close")
    assert (closed["outcome"], closed["reservation_count"]) == ("concluded", 2)
    for buyer in buyers[:2]:
        [mail] = mailbox.wait(1, to=buyer, subject=f"Concluded: {title}")
        assert f"Contact:     {holder['email']}" in mail.text  # SPEC §10: who to contact
    [to_holder] = mailbox.wait(1, to=holder["email"], subject=f"Concluded: 2 purchasers for {title}")
    assert buyers[2] not in to_holder.text and "What happens next" in to_holder.text
    time.sleep(1.5)
    assert [m.subject for m in mailbox.matching(to=buyers[2])] == [f"Reserved: {title} at $34.90"]
    late = verify_by_api(cobuy, links[2][1], links[2][2])
    assert (late.status_code, late.json()["code"]) == (409, "not_pending")  # lapsed at the close


def test_a_verify_link_used_twice_or_for_another_reservation_is_refused(cobuy, mailbox):
    offer = cobuy.create_offer(cobuy.register_seller(), verify_emails=True)
    ann, bob = unique_email("ann"), unique_email("bob")
    for buyer in (ann, bob):
        assert cobuy.reserve(offer["id"], buyer).status_code == 201
    (_, ann_id, ann_token), (bob_link, bob_id, bob_token) = verify_link(mailbox, ann), verify_link(mailbox, bob)
    assert verify_by_api(cobuy, ann_id, ann_token).status_code == 200
    twice = verify_by_api(cobuy, ann_id, ann_token)
    assert (twice.status_code, twice.json()["code"]) == (409, "already_verified")
    crossed = verify_by_api(cobuy, bob_id, ann_token)
    assert (crossed.status_code, crossed.json()["code"]) == (403, "wrong_verify_token")
    for odd in ({"token": "x" * 101}, {"token": ""}, {"token": 3}, {}, {"token": bob_token, "status": "active"}):
        assert cobuy.post(f"/api/v1/reservations/{bob_id}/verify", json=odd).status_code == 422, odd
    for wrong in ("zz", "é" * 10, bob_token.upper()):
        assert verify_by_api(cobuy, bob_id, wrong).status_code == 403, wrong
    page = cobuy.get(f"/reservations/{bob_id}/verify?token={ann_token}")
    assert page.status_code == 200  # the page itself changes nothing
    refused = verify_by_page(cobuy, f"/reservations/{bob_id}/verify?token={ann_token}")
    assert refused.status_code == 403 and "not valid" in refused.text
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 1, what="only Ann's counted")
    assert verify_by_page(cobuy, bob_link.split(cobuy.base_url, 1)[1]).status_code == 200
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 2, what="Bob's counted too")


def test_verifies_racing_the_close_are_counted_or_refused_and_the_mails_agree(cobuy, mailbox):
    holder = cobuy.register_seller()
    title = f"Verify race {holder['id'][:6]}"
    offer = cobuy.create_offer(holder, title=title, unit_price=500, minimum_reservations=1, verify_emails=True,
                               invite_at=instant(15), closes_at=instant(20))
    deadline = datetime.fromisoformat(offer["closes_at"]).timestamp()
    buyers = [unique_email("vrace") for _ in range(64)]
    for buyer in buyers:
        assert cobuy.reserve(offer["id"], buyer).status_code == 201
    links = {b: verify_link(mailbox, b) for b in buyers}
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def client(share: list[str]):
        session = requests.Session()
        for buyer in share:
            _, reservation_id, token = links[buyer]
            reply = session.post(cobuy.url(f"/api/v1/reservations/{reservation_id}/verify"), json={"token": token},
                                 timeout=30)
            with lock:
                outcomes[buyer] = reply.status_code
            time.sleep(0.06)

    assert time.time() < deadline - 1, "reserving took too long for the race to be run"
    time.sleep(deadline - time.time() - 0.3)  # the verifies straddle the deadline and the cut
    threads = [threading.Thread(target=client, args=(buyers[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    confirmed = {b for b, status in outcomes.items() if status == 200}
    assert set(outcomes.values()) <= {200, 409} and confirmed and len(confirmed) < len(buyers), outcomes
    closed = cobuy.wait_offer(offer["id"], lambda o: o["status"] == "closed", timeout=15, what="the close")
    assert closed["reservation_count"] == len(confirmed)
    [to_holder] = mailbox.wait(1, to=holder["email"], subject=f"Concluded: {len(confirmed)} purchasers for {title}",
                               timeout=20)
    assert {b for b in buyers if b in to_holder.text} == confirmed
    wait_for(lambda: len(mailbox.matching(subject=f"Concluded: {title}")) >= len(confirmed), 20,
             what="the conclusion mails")
    time.sleep(1)
    assert sorted(m.to for m in mailbox.matching(subject=f"Concluded: {title}")) == sorted(confirmed)


# ---- price drops (a system of its own: an 8 s delay instead of 30) ---------------------------------

@pytest.fixture(scope="module")
def quick_drops(servers, mailbox, tmp_path_factory, output_dir):
    with own_system(servers, mailbox, tmp_path_factory.mktemp("price-drops"), output_dir / "cobuy-up-drops.log", [],
                    COBUY_PRICE_DROP_DELAY_SECONDS="8", COBUY_PRICE_DROP_INTERVAL_SECONDS="600") as running:
        yield Cobuy(running.base_url)


def test_three_interceptions_within_the_delay_give_each_purchaser_one_mail_with_the_third(quick_drops, mailbox):
    cobuy = quick_drops
    holder, rival = cobuy.register_seller(name="First Seller"), cobuy.register_seller(name="Rival Seller")
    title = f"Dropping {holder['id'][:6]}"
    offer = cobuy.create_offer(holder, title=title, unit_price=5000, minimum_reservations=3, min_decrement=100)
    buyers = [unique_email("drop") for _ in range(3)]
    made = [cobuy.reserve(offer["id"], b).json() for b in buyers]
    gone = made[2]
    assert cobuy.delete(f"/api/v1/reservations/{gone['id']}",
                        headers={"X-Cancel-Token": gone["cancel_token"]}).status_code == 204
    verified = cobuy.create_offer(holder, title=f"{title} v", verify_emails=True)
    unconfirmed = unique_email("unconfirmed")
    assert cobuy.reserve(verified["id"], unconfirmed).status_code == 201
    for mail_for in buyers:
        mailbox.wait(1, to=mail_for, subject="Reserved:", timeout=60)
    time.sleep(1)  # the mailer has heard the reservations and the cancel
    started = time.monotonic()
    for price, seller in ((4800, rival), (4600, holder), (4400, rival)):
        assert cobuy.counter(seller, offer["id"], price, 3).status_code == 201
    assert cobuy.counter(rival, verified["id"], 9000, 3).status_code == 201
    assert time.monotonic() - started < 6, "the three interceptions must fall inside the 8 s window"
    for buyer in buyers[:2]:
        [mail] = mailbox.wait(1, to=buyer, subject=f"Price drop: {title}", timeout=60)
        assert "$44.00" in mail.subject and "Rival Seller" in mail.text and "it was $50.00" in mail.text
    time.sleep(9)  # a second window would be due 10 minutes on: nothing more arrives meanwhile
    for buyer in buyers[:2]:
        assert len(mailbox.matching(to=buyer, subject="Price drop")) == 1
    assert mailbox.matching(to=buyers[2], subject="Price drop") == []       # cancelled
    assert mailbox.matching(to=unconfirmed, subject="Price drop") == []      # never confirmed


def test_a_price_drop_reaches_a_purchaser_once_confirmed(quick_drops, mailbox):
    cobuy = quick_drops
    holder, rival = cobuy.register_seller(), cobuy.register_seller()
    offer = cobuy.create_offer(holder, unit_price=5000, verify_emails=True)
    buyer = unique_email("confirmed-drop")
    assert cobuy.reserve(offer["id"], buyer).status_code == 201
    _, reservation_id, token = verify_link(mailbox, buyer)
    assert verify_by_api(cobuy, reservation_id, token).status_code == 200
    time.sleep(1)
    assert cobuy.counter(rival, offer["id"], 4900, 3).status_code == 201
    [mail] = mailbox.wait(1, to=buyer, subject="Price drop:", timeout=60)
    assert "$49.00" in mail.subject
