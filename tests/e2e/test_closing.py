"""Closing at the deadline: concluded or failed, the exact mails, and the race with the deadline."""
import csv
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import requests

from tests.support import instant, unique_email, wait_for


def _deadline(offer) -> float:
    return datetime.fromisoformat(offer["closes_at"]).timestamp()


def test_concluded_offer_mails_each_active_purchaser_and_the_holder_once(cobuy, mailbox):
    holder = cobuy.register_seller(name="Closing Holder")
    title = f"Concluding {holder['id'][:6]}"
    offer = cobuy.create_offer(holder, title=title, unit_price=2000, minimum_reservations=2,
                               invite_at=instant(2), closes_at=instant(4))
    buyers = [unique_email("closing") for _ in range(3)]
    made = [cobuy.reserve(offer["id"], b, name=f"Buyer {i}").json() for i, b in enumerate(buyers)]
    gone = made[2]
    assert cobuy.delete(f"/api/v1/reservations/{gone['id']}",
                        headers={"X-Cancel-Token": gone["cancel_token"]}).status_code == 204
    closed = cobuy.wait_offer(offer["id"], lambda o: o["status"] == "closed", timeout=8, what="the close")
    assert closed["outcome"] == "concluded" and closed["reservation_count"] == 2
    for buyer in buyers[:2]:
        [mail] = mailbox.wait(1, to=buyer, subject=f"Concluded: {title}")
        assert "Closing Holder" in mail.text and "$20.00" in mail.text
    [to_holder] = mailbox.wait(1, to=holder["email"], subject=f"Concluded: 2 purchasers for {title}")
    assert buyers[0] in to_holder.text and buyers[1] in to_holder.text and buyers[2] not in to_holder.text
    attachment = next(to_holder.message.iter_attachments())
    rows = list(csv.DictReader(io.StringIO(attachment.get_content())))
    assert attachment.get_filename() == "purchasers.csv"
    assert sorted(r["email"] for r in rows) == sorted(buyers[:2])
    time.sleep(1)
    assert mailbox.matching(to=buyers[2], subject="Concluded") == []  # cancelled: nothing
    assert all(len(mailbox.matching(to=b, subject=f"Concluded: {title}")) == 1 for b in buyers[:2])
    listed = cobuy.get(f"/api/v1/offers/{offer['id']}/reservations", headers=cobuy.auth(holder))
    assert listed.status_code == 200 and listed.json()["count"] == 2  # still there after the close
    home = cobuy.home_showing(f'<tr data-offer-id="{offer["id"]}">')
    closed_section = home.split("Recently closed", 1)[1]
    assert title in closed_section and "concluded" in closed_section


def test_failed_offer_tells_purchasers_nothing_is_owed(cobuy, mailbox):
    holder = cobuy.register_seller()
    title = f"Failing {holder['id'][:6]}"
    offer = cobuy.create_offer(holder, title=title, unit_price=700, minimum_reservations=3,
                               invite_at=instant(1.5), closes_at=instant(3))
    buyer = unique_email("failed")
    cobuy.reserve(offer["id"], buyer)
    closed = cobuy.wait_offer(offer["id"], lambda o: o["status"] == "closed", timeout=8, what="the close")
    assert closed["outcome"] == "failed" and closed["reservation_count"] == 1
    [mail] = mailbox.wait(1, to=buyer, subject=f"Not concluded: {title}")
    assert "1 of 3 reservations" in mail.text
    assert "owe nothing" in mail.text
    [to_holder] = mailbox.wait(1, to=holder["email"], subject=f"Not concluded: {title} (1 of 3)")
    assert "nothing is owed" in to_holder.text
    link = f"{cobuy.base_url}/offers/{offer['id']}"
    assert link in to_holder.text and f'href="{link}"' in to_holder.html
    cobuy.page_showing(f"/offers/{offer['id']}", "Nothing was bought and nothing is owed")


def test_reservations_racing_the_deadline_are_all_counted_or_refused(cobuy, mailbox):
    holder = cobuy.register_seller()
    title = f"Race {holder['id'][:6]}"
    offer = cobuy.create_offer(holder, title=title, unit_price=100, minimum_reservations=1,
                               invite_at=instant(1), closes_at=instant(3))
    deadline = _deadline(offer)
    url = cobuy.url(f"/api/v1/offers/{offer['id']}/reservations")
    outcomes: list[tuple[str, int, float]] = []
    lock = threading.Lock()

    def client(i):
        session = requests.Session()
        n = 0
        while time.time() < deadline + 1.0:
            email = unique_email(f"race{i}-{n}")
            n += 1
            reply = session.post(url, json={"name": "Racer", "email": email}, timeout=30)
            with lock:
                outcomes.append((email, reply.status_code, time.time()))
            if time.time() < deadline - 0.5:
                time.sleep(0.2)

    wait_for(lambda: time.time() > deadline - 1.5, 5)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(client, range(16)))
    accepted = [e for e, code, _ in outcomes if code == 201]
    refused = [e for e, code, _ in outcomes if code == 409]
    assert len(accepted) + len(refused) == len(outcomes), {c for _, c, _ in outcomes}
    assert accepted and refused
    closed = cobuy.wait_offer(offer["id"], lambda o: o["status"] == "closed", timeout=8)
    assert closed["reservation_count"] == len(accepted)
    mailbox.wait(len(accepted), subject=f"Concluded: {title}", timeout=30)
    concluded_to = sorted(m.to for m in mailbox.matching(subject=f"Concluded: {title}"))
    assert concluded_to == sorted(accepted)  # every 201 exactly once; nobody refused
    assert all(t >= deadline - 0.05 for e, code, t in outcomes if code == 409)  # refused only at the deadline


def test_all_three_claims_in_one_run(cobuy, mailbox):
    """Claim 1 (home page, counter, invitation, comparison, conclusion), claim 2 (interception
    notice) and claim 3 (voluntary counter-offer before the invitation date)."""
    first = cobuy.register_seller(name="Claim First")
    voluntary = cobuy.register_seller(name="Claim Voluntary")
    invited = cobuy.register_seller(name="Claim Invited")
    title = f"Claims {first['id'][:6]}"
    offer = cobuy.create_offer(first, title=title, unit_price=10000, minimum_reservations=2, min_decrement=100,
                               invite_at=instant(4), closes_at=instant(8))
    buyers = [unique_email("claims") for _ in range(2)]
    for b in buyers:
        assert cobuy.reserve(offer["id"], b).status_code == 201
    cobuy.home_showing(title)  # claim 1: home page generation

    assert cobuy.counter(voluntary, offer["id"], 9500, 2).status_code == 201  # claim 3
    mailbox.wait(1, to=first["email"], subject=f"Intercepted: {title}")  # claim 2
    state = cobuy.wait_offer(offer["id"], lambda o: o["condition"]["seller_id"] == voluntary["id"]
                             and o["reservation_count"] == 2, timeout=3)
    assert state["invited"] is False

    invitation = mailbox.wait(1, to=invited["email"], subject=f"Invitation: beat $95.00 on {title}", timeout=8)[0]
    assert "Reservations so far:  2" in invitation.text  # claim 1: disclosure of count and price
    assert mailbox.matching(to=voluntary["email"], subject=f"Invitation: beat $95.00 on {title}") == []
    assert cobuy.counter(invited, offer["id"], 9000, 2).status_code == 201  # comparison on invitation
    mailbox.wait(1, to=voluntary["email"], subject=f"Intercepted: {title}")
    page = cobuy.wait_offer(offer["id"], lambda o: o["condition"]["seller_id"] == invited["id"], timeout=2)
    assert [h["kind"] for h in page["history"]] == ["initial", "voluntary", "invited"]
    cobuy.page_showing(f"/offers/{offer['id']}", "Claim Invited")  # rendered at most twice a second

    closed = cobuy.wait_offer(offer["id"], lambda o: o["status"] == "closed", timeout=10, what="the close")
    assert closed["outcome"] == "concluded"
    for b in buyers:  # claim 1: conclusion e-mailed when the term expires
        [mail] = mailbox.wait(1, to=b, subject=f"Concluded: {title} at $90.00")
        assert "Claim Invited" in mail.text
    mailbox.wait(1, to=invited["email"], subject=f"Concluded: 2 purchasers for {title}")
