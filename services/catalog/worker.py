"""catalog's worker: applies other services' events to the read model; relays its outbox."""
from __future__ import annotations

import sys

from shared import logs, worker
from shared.runtime import Runtime

from . import SERVICE
from .offers import HANDLERS
from .tables import MIGRATIONS, inbox, outbox


def main() -> int:
    runtime = Runtime.create(SERVICE)
    logs.configure(SERVICE, runtime.config.log_level)
    runtime.prepare_schema(MIGRATIONS)
    return worker.run(SERVICE, {
        "consumer": runtime.consumer(inbox, HANDLERS).run,
        "relay": runtime.relay(outbox).run,
    })


if __name__ == "__main__":
    sys.exit(main())
