"""The counter auction: comparison, interception (claim 2), voluntary counter-offers (claim 3)
and the invitation on its date (claim 1), through the gateway with real mail."""
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import requests

from shared.languages import format_instant
from tests.support import instant


def test_voluntary_counter_offer_intercepts_and_the_holder_is_told(cobuy, mailbox):
    first, rival = cobuy.register_seller(name="First Seller"), cobuy.register_seller(name="Rival Seller")
    offer = cobuy.create_offer(first, title="Bicycle", unit_price=30000, minimum_reservations=10,
                               min_decrement=500)
    reply = cobuy.counter(rival, offer["id"], 29500, 8)
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["offer_id"] == offer["id"] and body["intercepted_seller_id"] == first["id"]
    assert body["condition"]["seller_id"] == rival["id"] and body["condition"]["unit_price"] == 29500
    updated = cobuy.wait_offer(offer["id"], lambda o: o["condition"]["seller_id"] == rival["id"], timeout=2,
                               what="the home page to show the new holder within a second or so")
    assert updated["condition"]["unit_price"] == 29500 and updated["condition"]["minimum_reservations"] == 8
    assert [(h["kind"], h["unit_price"]) for h in updated["history"]] == [("initial", 30000), ("voluntary", 29500)]
    assert updated["offering_seller_id"] == first["id"]
    [notice] = mailbox.wait(1, to=first["email"], subject="Intercepted: Bicycle")
    assert "Rival Seller" in notice.text and "$295.00" in notice.text and "$300.00" in notice.text
    assert f"/api/v1/offers/{offer['id']}/counter-offers" in notice.text  # how to counter back
    assert '"unit_price": 29000' in notice.text
    assert "the purchasers will buy from Rival Seller, not from you, unless you beat it" in " ".join(notice.text.split())
    assert "sales right" not in notice.text and "sales right" not in notice.html
    cobuy.home_showing("Rival Seller", "$295.00")


def test_refused_counter_offers_answer_409_with_the_holding_condition(cobuy):
    holder, rival = cobuy.register_seller(), cobuy.register_seller()
    offer = cobuy.create_offer(holder, unit_price=1000, minimum_reservations=5, min_decrement=10)
    cases = [((holder, 900, 5), "already_holder"), ((rival, 1000, 5), "not_better"),
             ((rival, 995, 5), "not_better"), ((rival, 900, 6), "raises_minimum")]
    for (seller, price, minimum), code in cases:
        reply = cobuy.counter(seller, offer["id"], price, minimum)
        assert reply.status_code == 409, reply.text
        problem = reply.json()
        assert problem["code"] == code
        assert problem["condition"]["seller_id"] == holder["id"] and problem["condition"]["unit_price"] == 1000
        if code in ("not_better", "raises_minimum"):  # what would have won, in the seller's own terms
            assert (problem["price_to_beat"], problem["minimum_to_beat"]) == (990, 4)
    assert cobuy.counter(rival, offer["id"], 990, 5).status_code == 201  # price_to_beat wins
    assert cobuy.counter(holder, offer["id"], 990, 4).status_code == 201  # so does minimum_to_beat  # same price, lower minimum
    assert cobuy.counter(rival, "no-such-offer", 1, 1).status_code == 404
    unauthenticated = cobuy.post(f"/api/v1/offers/{offer['id']}/counter-offers",
                                 json={"unit_price": 1, "minimum_reservations": 1})
    assert unauthenticated.status_code == 401
    bad = cobuy.post(f"/api/v1/offers/{offer['id']}/counter-offers", headers=cobuy.auth(rival),
                     json={"unit_price": "cheap", "minimum_reservations": 1, "seller_id": holder["id"]})
    assert bad.status_code == 422 and {"unit_price", "seller_id"} <= set(bad.json()["errors"])


def test_concurrent_counter_offers_are_judged_one_at_a_time(cobuy):
    holder = cobuy.register_seller()
    rivals = [cobuy.register_seller() for _ in range(20)]
    offer = cobuy.create_offer(holder, unit_price=10_000, minimum_reservations=5)
    prices = [9_000 + 37 * i for i in range(20)]
    url = cobuy.url(f"/api/v1/offers/{offer['id']}/counter-offers")

    def bid(pair):
        seller, price = pair
        return price, requests.post(url, json={"unit_price": price, "minimum_reservations": 5},
                                    headers=cobuy.auth(seller), timeout=30)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(bid, zip(rivals, prices)))
    assert {r.status_code for _, r in results} <= {201, 409}
    accepted = [price for price, r in results if r.status_code == 201]
    assert min(prices) in accepted
    final = cobuy.wait_offer(offer["id"], lambda o: o["condition"]["unit_price"] == min(prices), timeout=5)
    history = [h["unit_price"] for h in final["history"]]
    assert history[0] == 10_000 and history[1:] == sorted(accepted, reverse=True)
    assert all(later < earlier for earlier, later in zip(history, history[1:]))  # strictly better each time


def test_invitation_goes_once_to_every_other_seller_with_count_and_price(cobuy, mailbox, system):
    holder = cobuy.register_seller(name="Holding Seller")
    others = [cobuy.register_seller() for _ in range(3)]
    title = f"Invited offer {holder['id'][:6]}"
    offer = cobuy.create_offer(holder, title=title, unit_price=5000, minimum_reservations=3,
                               invite_at=instant(3), closes_at=instant(60))
    for _ in range(2):
        assert cobuy.reserve(offer["id"]).status_code == 201
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 2)
    invited = cobuy.wait_offer(offer["id"], lambda o: o["invited"], timeout=6, what="invited: true")
    expected = system.registered_seller_emails() - {holder["email"]}
    mails = mailbox.wait(len(expected), subject=f"Invitation: beat $50.00 on {title}", timeout=20)
    assert sorted(m.to for m in mails) == sorted(expected)  # each other seller exactly once, not the holder
    assert {o["email"] for o in others} <= expected
    sample = next(m for m in mails if m.to == others[0]["email"])
    counted = [line.strip() for line in sample.text.splitlines() if "Reservations so far" in line]
    assert counted == ["Reservations so far:  2"] and "3 reservations" in sample.text, counted
    assert f"/api/v1/offers/{offer['id']}/counter-offers" in sample.text
    assert format_instant(datetime.fromisoformat(invited["closes_at"]), "en") in sample.text

    # an invited counter-offer intercepts again, and the holder is told (claim 2)
    reply = cobuy.counter(others[0], offer["id"], 4900, 3)
    assert reply.status_code == 201
    after = cobuy.wait_offer(offer["id"], lambda o: len(o["history"]) == 2, timeout=3)
    assert after["history"][1]["kind"] == "invited"
    mailbox.wait(1, to=holder["email"], subject=f"Intercepted: {title}")
    time.sleep(1)  # no second invitation arrives later
    assert len(mailbox.matching(subject=f"Invitation: beat $50.00 on {title}")) == len(expected)
