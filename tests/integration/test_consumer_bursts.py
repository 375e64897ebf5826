"""A consumer with `burst` applies the events already waiting in one transaction (shared/messaging.py):
still exactly one effect each, a poison event still dead-letters alone and takes nothing of its burst
with it, and a crash between the burst's commit and its acks redelivers them all into the inbox.
On the real broker and database."""
from __future__ import annotations

import itertools
import threading
import time

from shared.messaging import Consumer
from tests.integration.spine_app import EVENT, inbox
from tests.integration.test_poison_and_retries import _dead_letters
from tests.integration.test_spine import Loops, _duplicates, _peer, spine  # noqa: F401  (the fixture)
from tests.support import wait_for


class _Recording:
    """The spine's handler, noting which transaction applied each event."""

    def __init__(self, spine, poison: set[str] = frozenset()):
        self.spine, self.poison = spine, poison
        self.transactions: list[int] = []
        self.lock = threading.Lock()
        self.numbers = itertools.count()

    def __call__(self, session, envelope):
        with self.lock:  # each session is one transaction (sessions.begin()); id() may be reused
            self.transactions.append(session.info.setdefault("transaction", next(self.numbers)))
        self.spine.apply(session, envelope)  # its effect row first: it must not outlive a failed burst
        if envelope.data["ping_id"] in self.poison:
            raise ValueError("this event can never be applied")


def _burst_consumer(spine, handler, burst=10) -> Consumer:
    return Consumer(spine.bus, "spine", spine.sessions, inbox, {EVENT: handler}, prefetch=10, burst=burst)


def _published(spine, count):
    relay = Loops(spine.relay().run)
    try:
        wait_for(lambda: spine.unsent() == 0, 20, what=f"{count} published")
    finally:
        relay.close()


def test_waiting_events_are_applied_together_each_exactly_once(spine):
    spine.produce(60)
    _published(spine, 60)  # all waiting in the queue before the consumer starts
    handler = _Recording(spine)
    loops = Loops(_burst_consumer(spine, handler).run)
    try:
        wait_for(lambda: spine.effect_counts() == (60, 60), 30, what="60 effects")
        time.sleep(0.5)
        assert spine.effect_counts() == (60, 60)
    finally:
        loops.close()
    per_transaction = {t: handler.transactions.count(t) for t in set(handler.transactions)}
    assert max(per_transaction.values()) > 1, "no two waiting events shared a transaction"
    assert max(per_transaction.values()) <= 10  # never more than a burst
    assert len(handler.transactions) == 60  # none applied twice: every burst committed at once


def test_a_poison_event_in_a_burst_dead_letters_alone_and_the_rest_apply_once(spine):
    ids = spine.produce(30)
    poison = {ids[4]}
    _published(spine, 30)
    handler = _Recording(spine, poison)
    loops = Loops(_burst_consumer(spine, handler).run)
    try:
        wait_for(lambda: spine.effect_counts() == (29, 29), 30, what="the 29 good events")
        [dead] = _dead_letters(spine, 1)
        time.sleep(0.5)
        assert spine.effect_counts() == (29, 29)  # the failed burst's effects were all rolled back
    finally:
        loops.close()
    assert dead.headers["x-cobuy-error"].startswith("ValueError")
    assert ids[4] in dead.body
    # The poison's burst was tried together once, then each of it on its own (the poison 3 times).
    assert len(handler.transactions) > 30


def test_a_consumer_killed_between_a_bursts_commit_and_its_acks_redelivers_it_with_one_effect_each(spine):
    spine.produce(20)
    _published(spine, 20)
    crashed = _peer("consume-burst-crash-before-ack")
    assert crashed.returncode == 9, crashed.stderr.decode()[-2000:]
    committed, _ = spine.effect_counts()
    assert committed >= 1  # the first burst committed, none of it acked
    before = _duplicates()
    loops = Loops(spine.consumer().run)
    try:
        wait_for(lambda: spine.effect_counts() == (20, 20), 30, what="20 effects")
        time.sleep(0.5)
        assert spine.effect_counts() == (20, 20)
        assert _duplicates() - before == committed  # each redelivered one seen by the inbox and skipped
    finally:
        loops.close()
