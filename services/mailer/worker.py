"""mailer's worker: plans deliveries from events and sends them."""
from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path
from email.utils import parseaddr

from shared import config as config_module, logs, worker
from shared.runtime import Runtime

from . import SERVICE
from .delivery import Sender
from .planning import Planner
from .price_drops import PriceDrops
from .rendering import Renderer
from .tables import MIGRATIONS, inbox


def build_sender(runtime: Runtime) -> Sender:
    config = runtime.config
    renderer = Renderer(config.mail_from, config.public_url, config.mail_template_dir)
    return Sender(runtime.sessions, renderer, config.smtp(),
                  concurrency=config.mail_concurrency, lease_seconds=config.mail_lease_seconds)


def lower_priority(nice: int) -> None:
    os.nice(nice)
    # With the kernel's autogroups (Linux's default for desktop and server alike), nice only ranks
    # threads of one session against each other, and the CPU is shared between sessions first.
    # `cobuy up` starts each process in its own session, so that session's group is lowered too.
    autogroup = Path("/proc/self/autogroup")
    if nice and autogroup.exists() and os.getsid(0) == os.getpid():
        try:
            autogroup.write_text(str(nice))
        except OSError:
            pass  # not permitted here: nice alone still ranks it below in a shared session


def main() -> int:
    config = config_module.get()
    # Each sender thread holds a connection; the claimer, the consumer and the reclaimer need more.
    runtime = Runtime.create(SERVICE, config, pool_size=config.mail_concurrency + 4)
    logs.configure(SERVICE, runtime.config.log_level)
    # Mail can wait a few seconds, a purchaser's click cannot: where the mailer shares CPUs with
    # the web processes, it yields to them under contention and uses whatever they leave.
    lower_priority(runtime.config.mail_nice)
    runtime.prepare_schema(MIGRATIONS)
    domain = parseaddr(runtime.config.mail_from)[1].rpartition("@")[2] or "cobuy.localhost"
    price_drops = PriceDrops(domain, config.price_drop_delay_seconds, config.price_drop_interval_seconds)
    return worker.run(SERVICE, {
        "consumer": runtime.consumer(inbox, Planner(domain, price_drops).handlers()).run,
        "sender": build_sender(runtime).run,
        "price-drops": partial(price_drops.run, runtime.sessions),
    })


if __name__ == "__main__":
    sys.exit(main())
