"""Idle loops wait on their bell: a ring (work committed in this process) makes them look at once,
and with none they look once a second, not ten or twenty times (docs/performance.md, idle polling)."""
from __future__ import annotations

import queue
import threading
import time

from services.auction import steps
from services.mailer.delivery import Sender
from shared import doorbell


class Looks:
    def __init__(self):
        self.at: list[float] = []

    def __call__(self, *_args, **_kwargs):
        self.at.append(time.monotonic())
        return []


def _idle_then_ring(start_loop) -> tuple[int, float]:
    """Runs a loop idle for 1.5 s, then rings: returns its looks while idle and how soon it looked
    after the ring."""
    looks = Looks()
    stop = threading.Event()
    thread = threading.Thread(target=start_loop, args=(looks, stop), daemon=True)
    thread.start()
    time.sleep(1.5)
    idle_looks = len(looks.at)
    rung = time.monotonic()
    doorbell.ring()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not any(t >= rung for t in looks.at):
        time.sleep(0.005)
    stop.set()
    doorbell.ring()
    thread.join(timeout=5)
    assert not thread.is_alive(), "the loop did not stop on a ring after stop"
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


def test_a_ring_between_the_clear_and_the_wait_is_not_lost():
    bell = doorbell.bell()
    bell.clear()
    doorbell.ring()  # work committed while the loop was looking
    started = time.monotonic()
    assert bell.wait(1.0) and time.monotonic() - started < 0.1
