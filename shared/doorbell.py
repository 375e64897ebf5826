"""In-process wake-ups for a worker's idle loops.

A loop that finds no work (mails to claim, webhooks to send, dated steps to run) waits on its own
bell, with a long timeout as the safety net for work another process added. Whatever adds work in
this process rings after its commit: the consumer after each event it applied, the price-drop
expander after a window. An idle worker then costs a look a second per loop instead of ten or
twenty (what it cost: docs/performance.md, "Idle polling"), and work added here is seen at once.

Clear a bell before looking for work, then wait on it (`wait`) if none was found: a ring in between
leaves it set and the wait returns at once, so no ring is lost. The stop's ring can still fall before
the clear; `wait` asks the stop first, which the worker sets before it rings.

Busy, the consumer rings once per event it applies (a crowd: hundreds a second), most of them with
nothing for a given loop (a count changed: no mail, no step). `wait` therefore answers a ring no
sooner than `gap` after the loop's last look, the period it used to poll at: a loop never looks more
often than it polled, and work it is rung for waits no longer than it did.
"""
from __future__ import annotations

import threading
import time

_bells: list[threading.Event] = []
_lock = threading.Lock()


def bell() -> threading.Event:
    """A new bell, rung by every `ring()` of this process from now on."""
    event = threading.Event()
    with _lock:
        _bells.append(event)
    return event


def ring() -> None:
    """Wakes every loop waiting on a bell: work was committed, or the worker is stopping."""
    with _lock:
        bells = list(_bells)
    for event in bells:
        event.set()


def wait(bell: threading.Event, stop, timeout: float, looked: float, gap: float,
         urgent: threading.Event | None = None) -> None:
    """Until `bell` rings or `timeout` passes, then (rung) until `gap` after `looked` (the loop's
    last look, time.monotonic()); at once if `stop` is set, or rung with `urgent` set (a wake-up of
    the loop's own, such as a freed slot, which waits out no gap)."""
    if stop.is_set():
        return
    if bell.wait(timeout):
        if urgent is not None and urgent.is_set():
            return
        rest = looked + gap - time.monotonic()
        if rest > 0:
            stop.wait(rest)
