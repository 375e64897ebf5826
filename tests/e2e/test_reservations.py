"""Reservations and the live counter (claim 1's counter means), through the gateway."""
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.support import instant, unique_email, wait_for


def test_reserving_returns_201_then_200_for_the_same_email_in_any_case(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    email = unique_email("pat")
    first = cobuy.reserve(offer["id"], email)
    assert first.status_code == 201
    body = first.json()
    assert body["status"] == "active" and body["offer_id"] == offer["id"] and body["cancel_token"]
    again = cobuy.reserve(offer["id"], email.upper())
    assert again.status_code == 200 and again.json() == body
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 1, what="count 1")
    time.sleep(0.5)
    assert cobuy.offer(offer["id"])["reservation_count"] == 1


def test_reservation_confirmation_mail_has_the_facts_and_a_working_cancel_link(cobuy, mailbox):
    offer = cobuy.create_offer(cobuy.register_seller(), title="Espresso machine", unit_price=25000,
                               minimum_reservations=4)
    email = unique_email("mail")
    reservation = cobuy.reserve(offer["id"], email, name="Ann Example").json()
    [mail] = mailbox.wait(1, to=email, subject="Reserved")
    assert "Espresso machine" in mail.subject and "$250.00" in mail.subject
    assert "Ann Example" in mail.text and "4 reservations" in mail.text and "UTC" in mail.text
    link = f"{cobuy.base_url}/reservations/{reservation['id']}/cancel?token={reservation['cancel_token']}"
    assert link in mail.text and link.replace("&", "&amp;") in mail.html
    assert mail.message["Message-ID"].startswith("<") and mail.message["From"]
    assert mail.message.get_body(("html",)) is not None


def test_cancel_needs_the_token_and_then_the_count_goes_down(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    r = cobuy.reserve(offer["id"]).json()
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 1)
    wrong = cobuy.delete(f"/api/v1/reservations/{r['id']}", headers={"X-Cancel-Token": "nope"})
    assert wrong.status_code == 403 and wrong.json()["code"] == "wrong_cancel_token"
    assert cobuy.delete(f"/api/v1/reservations/{r['id']}").status_code == 403
    ok = cobuy.delete(f"/api/v1/reservations/{r['id']}", headers={"X-Cancel-Token": r["cancel_token"]})
    assert ok.status_code == 204
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 0, what="count back to 0")
    assert cobuy.delete("/api/v1/reservations/unknown", headers={"X-Cancel-Token": "x"}).status_code == 404


def test_only_the_holder_lists_the_reservations(cobuy):
    holder, other = cobuy.register_seller(), cobuy.register_seller()
    offer = cobuy.create_offer(holder)
    email = unique_email("listed")
    cobuy.reserve(offer["id"], email, name="Listed Person")
    path = f"/api/v1/offers/{offer['id']}/reservations"
    mine = cobuy.get(path, headers=cobuy.auth(holder))
    assert mine.status_code == 200
    assert [(i["name"], i["email"]) for i in mine.json()["items"]] == [("Listed Person", email)]
    assert cobuy.get(path, headers=cobuy.auth(other)).status_code == 403
    assert cobuy.get(path).status_code == 401


def test_reservation_input_rules(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    path = f"/api/v1/offers/{offer['id']}/reservations"
    cases = [({"name": "A\r\nB", "email": unique_email()}, "name"),
             ({"name": "", "email": unique_email()}, "name"),
             ({"name": "x" * 101, "email": unique_email()}, "name"),
             ({"name": "Ann", "email": "not-an-email"}, "email"),
             ({"name": "Ann", "email": unique_email(), "status": "cancelled"}, "status")]
    for body, field in cases:
        reply = cobuy.post(path, json=body)
        assert reply.status_code == 422 and field in reply.json()["errors"], (body, reply.text)
    assert cobuy.post(path, data="{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert cobuy.reserve("no-such-offer").status_code == 404


def test_reservations_on_a_brand_new_offer_never_404(cobuy):
    """Read-your-writes: reserve in the same instant the offer's 201 arrives, 50 times."""
    seller = cobuy.register_seller()
    for _ in range(50):
        offer = cobuy.create_offer(seller)
        reply = cobuy.reserve(offer["id"])
        assert reply.status_code == 201, reply.text


def test_reservations_are_refused_from_closes_at_on(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller(), closes_at=instant(2.5), invite_at=instant(1))
    early = cobuy.reserve(offer["id"])
    assert early.status_code == 201
    wait_for(lambda: time.time() > __import__("datetime").datetime.fromisoformat(offer["closes_at"]).timestamp(),
             5, what="the deadline")
    late = cobuy.reserve(offer["id"])
    assert late.status_code == 409 and late.json()["code"] == "offer_closed"
    cancel = cobuy.delete(f"/api/v1/reservations/{early.json()['id']}",
                          headers={"X-Cancel-Token": early.json()["cancel_token"]})
    assert cancel.status_code == 409 and cancel.json()["code"] == "offer_closed"


def test_300_concurrent_reservations_plus_repeats_count_exactly_then_100_cancellations(cobuy, mailbox):
    offer = cobuy.create_offer(cobuy.register_seller(), minimum_reservations=1000)
    path = cobuy.url(f"/api/v1/offers/{offer['id']}/reservations")
    emails = [unique_email(f"crowd{i}") for i in range(300)]
    local = __import__("threading").local()

    def reserve(email):
        session = getattr(local, "s", None) or requests.Session()
        local.s = session
        return email, session.post(path, json={"name": "Crowd", "email": email}, timeout=30)

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(reserve, emails + emails[:60]))
    codes = [r.status_code for _, r in results]
    assert codes.count(201) == 300 and codes.count(200) == 60, sorted(set(codes))
    first = {email: r.json() for email, r in results[:300]}
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 300, timeout=20, what="count 300")
    cobuy.page_showing(f"/offers/{offer['id']}", '<strong class="count">300</strong> of')
    for email in emails:
        mailbox.wait(1, to=email, subject="Reserved", timeout=30)
    assert all(len(mailbox.matching(to=e, subject="Reserved")) == 1 for e in emails)

    def cancel(email):
        r = first[email]
        return requests.delete(cobuy.url(f"/api/v1/reservations/{r['id']}"),
                               headers={"X-Cancel-Token": r["cancel_token"]}, timeout=30).status_code

    with ThreadPoolExecutor(32) as pool:
        assert set(pool.map(cancel, emails[:100])) == {204}
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 200, timeout=20, what="count 200")
    time.sleep(0.5)
    assert cobuy.offer(offer["id"])["reservation_count"] == 200
