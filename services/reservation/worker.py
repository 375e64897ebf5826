"""reservation's worker: learns offers, cuts them at the close, relays and recounts."""
from __future__ import annotations

import sys

from shared import logs, worker
from shared.runtime import Runtime

from . import SERVICE
from .recounts import note_recounts, recounter
from .reservations import HANDLERS, refresh_open_tallies
from .tables import MIGRATIONS, inbox, outbox


def main() -> int:
    runtime = Runtime.create(SERVICE)
    logs.configure(SERVICE, runtime.config.log_level)
    runtime.prepare_schema(MIGRATIONS)
    refresh_open_tallies(runtime.sessions)
    return worker.run(SERVICE, {
        "consumer": runtime.consumer(inbox, HANDLERS).run,
        "relay": runtime.relay(outbox, on_sent=note_recounts,
                               follow_up=recounter(runtime.sessions, runtime.config.count_interval_seconds)).run,
    })


if __name__ == "__main__":
    sys.exit(main())
