"""In-process wake-ups for a worker's idle loops.

A loop that finds no work (mails to claim, webhooks to send, dated steps to run) waits on its own
bell, with a long timeout as the safety net for work another process added. Whatever adds work in
this process rings after its commit: the consumer after each event it applied, the price-drop
expander after a window. An idle worker then costs a look a second per loop instead of ten or
twenty (what it cost: docs/performance.md, "Idle polling"), and work added here is seen at once.

Clear a bell before looking for work, then wait on it if none was found: a ring in between leaves
it set and the wait returns at once, so no ring is lost.
"""
from __future__ import annotations

import threading

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
