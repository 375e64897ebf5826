"""Idle loops wait on their bell: a ring (work committed in this process) makes them look at once,
and with none they look once a second, not ten or twenty times (docs/performance.md, idle polling)."""
from __future__ import annotations

import queue
import threading
import time
from contextlib import contextmanager

from services.auction import steps
from services.mailer.delivery import Sender
from shared import doorbell


class Looks:
    def __init__(self):
        self.at: list[float] = []

    def __call__(self, *_args, **_kwargs):
        self.at.append(time.monotonic())
        return []


@contextmanager
def _running(start_loop):
    """A loop in a thread with its looks counted; stopped (and rung, as the worker does) at the end."""
    looks = Looks()
    stop = threading.Event()
    thread = threading.Thread(target=start_loop, args=(looks, stop), daemon=True)
    thread.start()
    try:
        yield looks
    finally:
        stop.set()
        doorbell.ring()
        thread.join(timeout=5)
    assert not thread.is_alive(), "the loop did not stop on a ring after stop"


def _idle_then_ring(start_loop) -> tuple[int, float]:
    """Runs a loop idle for 1.5 s, then rings: returns its looks while idle and how soon it looked
    after the ring."""
    with _running(start_loop) as looks:
        time.sleep(1.5)
        idle_looks = len(looks.at)
        rung = time.monotonic()
        doorbell.ring()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not any(t >= rung for t in looks.at):
            time.sleep(0.005)
    after = [t - rung for t in looks.at if t >= rung]
    return idle_looks, after[0] if after else float("inf")


def test_an_idle_mail_claimer_looks_once_a_second_and_at_once_when_rung():
    def loop(looks, stop):
        sender = Sender.__new__(Sender)
        sender.claim = looks
        sender._claim_loop(stop, queue.Queue(maxsize=1))

    idle_looks, reaction = _idle_then_ring(loop)
    assert idle_looks <= 3  # 1.5 s at one look a second (it was ten a second)
    assert reaction < 0.2


def test_an_idle_scheduler_looks_once_a_second_and_at_once_when_rung(monkeypatch):
    def loop(looks, stop):
        def run_due_steps(_sessions, limit=100, horizon=1.0):
            looks()
            return 0, horizon  # nothing due, nothing known

        monkeypatch.setattr(steps, "run_due_steps", run_due_steps)
        steps.Scheduler(sessions=None).run(stop)

    idle_looks, reaction = _idle_then_ring(loop)
    assert idle_looks <= 3  # it was four a second
    assert reaction < 0.2


def test_an_idle_price_drop_expander_looks_once_a_second_and_soon_when_rung():
    from services.mailer.price_drops import PriceDrops

    def loop(looks, stop):
        drops = PriceDrops("cobuy.example")
        drops.expand_one = lambda _sessions: bool(looks())  # nothing due
        drops.run(None, stop)

    idle_looks, reaction = _idle_then_ring(loop)
    assert idle_looks <= 3  # it was four a second
    assert reaction < 0.3  # no sooner than a quarter second after its last look


def test_a_ring_between_the_clear_and_the_wait_is_not_lost():
    bell = doorbell.bell()
    bell.clear()
    doorbell.ring()  # work committed while the loop was looking
    started = time.monotonic()
    assert bell.wait(1.0) and time.monotonic() - started < 0.1


class StopRungAfterTheCheck:
    """A stop event whose first `is_set()` answers "no" just as the signal lands: the worker sets
    the stop and rings (shared/worker.run) between the loop's check and its next step."""

    def __init__(self):
        self.event = threading.Event()
        self.asked = 0

    def is_set(self) -> bool:
        self.asked += 1
        answer = self.event.is_set()
        if self.asked == 1:
            self.event.set()
            doorbell.ring()
        return answer

    def wait(self, timeout=None) -> bool:
        return self.event.wait(timeout)


def _stops_within(loop, seconds: float) -> float:
    stop = StopRungAfterTheCheck()
    started = time.monotonic()
    thread = threading.Thread(target=loop, args=(stop,), daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()
    return time.monotonic() - started


def test_a_stop_rung_just_after_the_mail_claimers_check_is_not_lost():
    sender = Sender.__new__(Sender)
    sender.claim = Looks()
    assert _stops_within(lambda stop: sender._claim_loop(stop, queue.Queue(maxsize=1)), 0.3) < 0.3


def test_a_stop_rung_just_after_the_schedulers_check_is_not_lost(monkeypatch):
    monkeypatch.setattr(steps, "run_due_steps", lambda _sessions, limit=100, horizon=1.0: (0, horizon))
    assert _stops_within(steps.Scheduler(sessions=None).run, 0.3) < 0.3


def _rung_for_a_second(start_loop) -> int:
    """A crowd: the consumer applies an event (and rings) every millisecond for a second. Returns
    how many looks the loop took meanwhile."""
    with _running(start_loop) as looks:
        time.sleep(0.2)
        before = len(looks.at)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            doorbell.ring()
            time.sleep(0.001)
        return len(looks.at) - before


def test_a_crowds_events_do_not_make_the_scheduler_look_more_often_than_it_polled():
    def loop(looks, stop):
        def run_due_steps(_sessions, limit=100, horizon=1.0):
            looks()
            return 0, horizon

        original, steps.run_due_steps = steps.run_due_steps, run_due_steps
        try:
            steps.Scheduler(sessions=None).run(stop)
        finally:
            steps.run_due_steps = original

    assert _rung_for_a_second(loop) <= 6  # it polled four times a second; a ring per event was hundreds


def test_a_crowds_events_do_not_make_the_mail_claimer_look_more_often_than_it_polled():
    def loop(looks, stop):
        sender = Sender.__new__(Sender)
        sender.claim = looks
        sender._claim_loop(stop, queue.Queue(maxsize=1))

    assert _rung_for_a_second(loop) <= 12  # it polled ten times a second


def test_a_crowds_events_do_not_make_the_webhook_claimer_look_more_often_than_it_polled():
    from types import SimpleNamespace

    from services.mailer.webhooks.delivery import Deliverer

    def loop(looks, stop):
        deliverer = Deliverer.__new__(Deliverer)
        deliverer.settings = SimpleNamespace(concurrency=4)
        deliverer._busy, deliverer._busy_lock, deliverer._wake = set(), threading.Lock(), doorbell.bell()
        deliverer._freed = threading.Event()
        deliverer.reclaim_abandoned = deliverer.tell_counts = lambda: 0
        deliverer.claim = looks
        deliverer._claim_loop(stop, queue.Queue())

    assert _rung_for_a_second(loop) <= 24  # it polled twenty times a second


def test_a_webhook_sent_frees_its_slot_and_the_claimer_looks_at_once_even_right_after_a_look(monkeypatch):
    """One endpoint gets one message at a time: its next is claimed when the last one's answer frees
    the slot, so that look must not wait out the gap meant for the consumer's rings."""
    from types import SimpleNamespace

    from services.mailer.webhooks import delivery
    from services.mailer.webhooks.delivery import Deliverer

    monkeypatch.setattr(delivery, "RUNG_CLAIM_SECONDS", 0.5, raising=False)  # a gap a loaded machine cannot blur

    looks = Looks()
    deliverer = Deliverer.__new__(Deliverer)
    deliverer.settings = SimpleNamespace(concurrency=4)
    deliverer._busy, deliverer._busy_lock, deliverer._wake = {"e1"}, threading.Lock(), doorbell.bell()
    deliverer._freed = threading.Event()
    deliverer.reclaim_abandoned = deliverer.tell_counts = lambda: 0
    deliverer.attempt = lambda row: None
    deliverer.record = lambda row, answer: None
    freed_at: list[float] = []

    def claim(_slots):
        looks()
        if len(looks.at) == 3:  # the answer comes 5 ms after this look
            def free():
                time.sleep(0.005)
                freed_at.append(time.monotonic())
                deliverer.deliver({"endpoint_id": "e1"})
            threading.Thread(target=free, daemon=True).start()
        return []

    deliverer.claim = claim
    stop = threading.Event()
    thread = threading.Thread(target=deliverer._claim_loop, args=(stop, queue.Queue()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (freed_at and any(t > freed_at[0] for t in looks.at)):
        time.sleep(0.001)
    stop.set()
    doorbell.ring()
    thread.join(timeout=5)
    assert freed_at, "the claimer never looked a third time"
    reaction = min(t for t in looks.at if t > freed_at[0]) - freed_at[0]
    assert reaction < 0.2
