"""A worker loop's heartbeat (shared/worker.py): asking the stop event is a beat, a long wait beats
in slices, and a loop that stops asking goes stale while the others do not."""
from __future__ import annotations

import threading

from shared import worker


def test_a_loop_that_waits_on_purpose_keeps_beating_through_its_wait(monkeypatch):
    monkeypatch.setattr(worker, "BEAT_SECONDS", 0.05)
    beats = worker.Heartbeats(["scheduler"])
    seen: list[float] = []
    beats.beat = lambda name: seen.append(name)  # count the beats of one wait
    pulse = worker.Pulse(threading.Event(), "scheduler", beats)
    assert pulse.wait(0.3) is False
    assert len(seen) >= 5  # one per slice, not one per wait


def test_a_wait_ends_at_once_when_the_worker_is_stopped():
    stop = threading.Event()
    pulse = worker.Pulse(stop, "relay", worker.Heartbeats(["relay"]))
    threading.Timer(0.05, pulse.set).start()
    assert pulse.wait(30) is True and stop.is_set() and pulse.is_set()


def test_only_the_loop_that_stopped_asking_is_stale():
    beats = worker.Heartbeats(["consumer", "relay"])
    beats._last["relay"] -= 120  # the relay last asked two minutes ago
    worker.Pulse(threading.Event(), "consumer", beats).is_set()
    assert set(beats.stale(60)) == {"relay"}
    worker.Pulse(threading.Event(), "relay", beats).is_set()
    assert beats.stale(60) == {}
