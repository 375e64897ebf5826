"""A stateful property test through the gateway (SPEC §2, §5, §7): random interleavings of reserve,
repeat, cancel, re-reserve and counter-offer — some sent several at once, all with random
correlation ids and idempotency keys — checked after every step against a small model: the count,
the holder, the events each service recorded, and at the end exactly the mails the model expects.
"""
from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field

import requests
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import select

from services.auction.rules import Condition, Verdict, judge_counter_offer
from tests.infra import IN_CI
from tests.support import Cobuy, at_once, wait_for

VALID_CORRELATION = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")
# Header values a client may send (requests refuses line breaks and leading spaces itself).
HEADER_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0xFF, blacklist_categories=("Cc", "Zs", "Zl", "Zp"))
CORRELATION_IDS = st.one_of(st.none(), st.text(HEADER_CHARS, min_size=1, max_size=300),
                            st.from_regex(VALID_CORRELATION, fullmatch=True))
EMAILS, NAMES, KEYS = 3, ("Ann Buyer", "Bob Buyer"), ("key-a", "key-b", "key-c")
START_PRICE, START_MINIMUM, STEP = 10_000, 4, 100


@dataclass
class Purchaser:
    email: str
    reservation: dict | None = None  # id and cancel token, from the first 201
    active: bool = False
    accepted: int = 0  # ReservationAccepted events, so confirmation mails
    cancelled: int = 0


@dataclass
class Model:
    purchasers: list[Purchaser]
    holder: int = 0  # index into the sellers
    condition: tuple[int, int] = (START_PRICE, START_MINIMUM)
    keys: dict[str, tuple[tuple[str, str], int, int]] = field(default_factory=dict)  # key -> (fingerprint, who, status)
    intercepted: dict[int, int] = field(default_factory=dict)  # seller index -> interception mails

    @property
    def count(self) -> int:
        return sum(p.active for p in self.purchasers)


def _outbox_events(runtime, table, offer_id: str) -> list[dict]:
    with runtime.sessions() as session:
        bodies = session.execute(select(table.c.body).where(table.c.body.contains(offer_id))).scalars().all()
    return [json.loads(b) for b in bodies]


def test_random_interleavings_keep_count_holder_events_and_mails_true(system, mailbox):
    from services.auction.tables import outbox as auction_outbox
    from services.reservation.tables import outbox as reservation_outbox

    cobuy = Cobuy(system.base_url)
    sellers = [cobuy.register_seller(name=f"Prop Seller {i}") for i in range(3)]
    reservation_db, auction_db = system.runtime("reservation"), system.runtime("auction")

    class Interleavings(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            tag = uuid.uuid4().hex[:8]
            self.title = f"Prop {tag}"
            self.offer = cobuy.create_offer(sellers[0], title=self.title, unit_price=START_PRICE,
                                            minimum_reservations=START_MINIMUM, min_decrement=STEP)
            self.model = Model([Purchaser(f"prop-{tag}-{i}@example.com") for i in range(EMAILS)])
            self.path = cobuy.url(f"/api/v1/offers/{self.offer['id']}")

        def _headers(self, correlation: str | None, **extra) -> dict:
            headers = {k: v for k, v in extra.items() if v is not None}
            if correlation is not None:
                headers["X-Correlation-Id"] = correlation
            return headers

        @staticmethod
        def _check_correlation(reply: requests.Response, sent: str | None) -> None:
            echoed = reply.headers.get("X-Correlation-Id", "")
            assert VALID_CORRELATION.match(echoed), echoed
            if sent is not None and VALID_CORRELATION.match(sent):
                assert echoed == sent

        # -- the rules ---------------------------------------------------------------------------

        @rule(who=st.integers(0, EMAILS - 1), name=st.sampled_from(NAMES), key=st.sampled_from((None,) + KEYS),
              burst=st.integers(1, 4), correlation=CORRELATION_IDS)
        def reserve(self, who, name, key, burst, correlation):
            purchaser = self.model.purchasers[who]
            headers = self._headers(correlation, **{"Idempotency-Key": key})
            replies = at_once(burst, lambda: requests.post(f"{self.path}/reservations", headers=headers, timeout=30,
                                                          json={"name": name, "email": purchaser.email}))
            for reply in replies:
                self._check_correlation(reply, correlation)
            codes = sorted(r.status_code for r in replies)
            fingerprint = (name, purchaser.email)
            if key in self.model.keys:
                bound, first_who, first_status = self.model.keys[key]
                if bound != fingerprint:
                    assert codes == [422] * burst, codes
                    assert {r.json()["code"] for r in replies} == {"idempotency_key_mismatch"}
                    assert not any(p.reservation and p.reservation["id"] in r.text
                                   for p in self.model.purchasers for r in replies)
                    return
                assert codes == [first_status] * burst, codes
                assert {r.json()["id"] for r in replies} == {self.model.purchasers[first_who].reservation["id"]}
                return
            becomes_active = not purchaser.active
            if key is not None:  # every request of the burst gets the first answer
                expected = [201 if becomes_active else 200] * burst
            else:
                expected = sorted([200] * (burst - 1) + [201 if becomes_active else 200])
            assert codes == expected, (codes, expected)
            body = replies[0].json()
            assert body["status"] == "active" and {r.json()["id"] for r in replies} == {body["id"]}
            if purchaser.reservation is None:
                purchaser.reservation = {"id": body["id"], "cancel_token": body["cancel_token"]}
            assert body["id"] == purchaser.reservation["id"]
            if becomes_active:
                purchaser.active, purchaser.accepted = True, purchaser.accepted + 1
            if key is not None:
                self.model.keys[key] = (fingerprint, who, expected[0])

        @precondition(lambda self: any(p.reservation for p in self.model.purchasers))
        @rule(who=st.integers(0, EMAILS - 1), burst=st.integers(1, 4), correlation=CORRELATION_IDS,
              right_token=st.booleans())
        def cancel(self, who, burst, correlation, right_token):
            purchaser = self.model.purchasers[who]
            if purchaser.reservation is None:
                return
            token = purchaser.reservation["cancel_token"] if right_token else "0" * 40
            headers = self._headers(correlation, **{"X-Cancel-Token": token})
            url = cobuy.url(f"/api/v1/reservations/{purchaser.reservation['id']}")
            replies = at_once(burst, lambda: requests.delete(url, headers=headers, timeout=30))
            for reply in replies:
                self._check_correlation(reply, correlation)
            codes = [r.status_code for r in replies]
            if not right_token:
                assert codes == [403] * burst, codes
                return
            assert codes == [204] * burst, codes
            if purchaser.active:
                purchaser.active, purchaser.cancelled = False, purchaser.cancelled + 1

        @rule(seller=st.integers(0, 2), cut=st.sampled_from((0, STEP // 2, STEP, 3 * STEP)),
              minimum_change=st.sampled_from((-1, 0, 1)), burst=st.integers(1, 3), correlation=CORRELATION_IDS)
        def counter_offer(self, seller, cut, minimum_change, burst, correlation):
            price, minimum = self.model.condition
            counter = Condition(str(seller), price - cut, max(1, minimum + minimum_change))
            verdict = judge_counter_offer(counter, Condition(str(self.model.holder), price, minimum), STEP, True)
            headers = {**cobuy.auth(sellers[seller]), **self._headers(correlation)}
            body = {"unit_price": counter.unit_price, "minimum_reservations": counter.minimum_reservations}
            replies = at_once(burst, lambda: requests.post(f"{self.path}/counter-offers", json=body, headers=headers,
                                                          timeout=30))
            for reply in replies:
                self._check_correlation(reply, correlation)
            codes = sorted(r.status_code for r in replies)
            refusals = {r.json()["code"] for r in replies if r.status_code == 409}
            if verdict is Verdict.BETTER:
                assert codes == [201] + [409] * (burst - 1), codes
                assert refusals <= {"already_holder"}, refusals
                self.model.intercepted[self.model.holder] = self.model.intercepted.get(self.model.holder, 0) + 1
                self.model.holder, self.model.condition = seller, (counter.unit_price, counter.minimum_reservations)
            else:
                assert codes == [409] * burst and refusals == {verdict.value}, (codes, refusals, verdict)

        # -- after every step ----------------------------------------------------------------------

        @invariant()
        def count_and_holder_follow_the_model(self):
            expected = (self.model.count, sellers[self.model.holder]["id"], self.model.condition)
            wait_for(lambda: (lambda o: (o["reservation_count"], o["condition"]["seller_id"],
                                         (o["condition"]["unit_price"], o["condition"]["minimum_reservations"]))
                              == expected)(cobuy.offer(self.offer["id"])),
                     timeout=10, what=f"count, holder and condition {expected}")

        @invariant()
        def each_state_change_recorded_one_event(self):
            events = _outbox_events(reservation_db, reservation_outbox, self.offer["id"])
            for p in self.model.purchasers:
                mine = [e["type"] for e in events if p.reservation and e["data"].get("reservation_id") == p.reservation["id"]]
                assert (mine.count("ReservationAccepted"), mine.count("ReservationCancelled")) == (p.accepted, p.cancelled)
            interceptions = [e for e in _outbox_events(auction_db, auction_outbox, self.offer["id"])
                             if e["type"] == "OfferIntercepted"]
            assert len(interceptions) == sum(self.model.intercepted.values())

        def teardown(self):
            expected = []
            for p in self.model.purchasers:
                expected += [(p.email, "Reserved", p.accepted), (p.email, "Cancelled", p.cancelled)]
            for index, times in self.model.intercepted.items():
                expected.append((sellers[index]["email"], "Intercepted", times))

            def mails(to: str, subject: str) -> int:
                return sum(self.title in m.subject for m in mailbox.matching(to=to, subject=subject))

            wait_for(lambda: all(mails(*e[:2]) >= e[2] for e in expected), timeout=30, what=f"mails {expected}")
            time.sleep(0.5)  # a mail that should not exist would have followed its twin by now
            assert [(to, subject, mails(to, subject)) for to, subject, _ in expected] == expected

    try:
        run_state_machine_as_test(Interleavings, settings=settings(
            max_examples=int(os.environ.get("COBUY_PROPERTY_EXAMPLES", "10")), stateful_step_count=12, deadline=None, database=None, derandomize=IN_CI,
            suppress_health_check=list(HealthCheck)))
    finally:
        reservation_db.engine.dispose()
        auction_db.engine.dispose()
