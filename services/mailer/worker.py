"""mailer's worker: plans deliveries from events and sends them."""
from __future__ import annotations

import os
import sys
from email.utils import parseaddr

from shared import logs, worker
from shared.runtime import Runtime

from . import SERVICE
from .app import MIGRATIONS
from .delivery import Sender
from .planning import Planner
from .rendering import Renderer
from .tables import inbox


def build_sender(runtime: Runtime) -> Sender:
    config = runtime.config
    return Sender(runtime.sessions, Renderer(config.mail_from, config.public_url), config.smtp_address(),
                  concurrency=config.mail_concurrency, lease_seconds=config.mail_lease_seconds)


def main() -> int:
    runtime = Runtime.create(SERVICE, pool_size=12)
    logs.configure(SERVICE, runtime.config.log_level)
    # Mail can wait a few seconds, a purchaser's click cannot: where the mailer shares CPUs with
    # the web processes, it yields to them under contention and uses whatever they leave.
    os.nice(runtime.config.mail_nice)
    runtime.migrate(MIGRATIONS)
    domain = parseaddr(runtime.config.mail_from)[1].rpartition("@")[2] or "cobuy.localhost"
    return worker.run(SERVICE, {
        "consumer": runtime.consumer(inbox, Planner(domain).handlers()).run,
        "sender": build_sender(runtime).run,
    })


if __name__ == "__main__":
    sys.exit(main())
