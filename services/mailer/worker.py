"""mailer's worker: plans mails and webhooks from events and delivers them."""
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
from .webhooks.delivery import Deliverer, Settings
from .webhooks.planning import WebhookPlanner, with_webhooks


CONSUMER_BURST = 50  # events applied in one transaction at most (shared/messaging.py, docs/adr/0016)


def build_sender(runtime: Runtime) -> Sender:
    config = runtime.config
    renderer = Renderer(config.mail_from, config.public_url, config.mail_template_dir)
    return Sender(runtime.sessions, renderer, config.smtp(),
                  concurrency=config.mail_concurrency, lease_seconds=config.mail_lease_seconds)


def handlers(mail_domain: str, public_url: str, price_drops: PriceDrops | None = None) -> dict:
    """What the consumer does with each event: plan its mails and its webhooks, in one transaction."""
    return with_webhooks(Planner(mail_domain, price_drops).handlers(), WebhookPlanner(public_url).handlers())


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
    runtime = Runtime.create(SERVICE, config, pool_size=config.mail_concurrency + config.webhook_concurrency + 5)
    logs.configure(SERVICE, runtime.config.log_level)
    # Mail can wait a few seconds, a purchaser's click cannot: where the mailer shares CPUs with
    # the web processes, it yields to them under contention and uses whatever they leave.
    lower_priority(runtime.config.mail_nice)
    runtime.prepare_schema(MIGRATIONS)
    domain = parseaddr(runtime.config.mail_from)[1].rpartition("@")[2] or "cobuy.localhost"
    price_drops = PriceDrops(domain, config.price_drop_delay_seconds, config.price_drop_interval_seconds)
    return worker.run(SERVICE, {
        # A confirmation's planning is a few small statements: the ones waiting share one commit.
        "consumer": runtime.consumer(inbox, handlers(domain, runtime.config.public_url, price_drops),
                                     burst=CONSUMER_BURST).run,
        "sender": build_sender(runtime).run,
        "price-drops": partial(price_drops.run, runtime.sessions),
        "webhooks": Deliverer(runtime.sessions, Settings.of(runtime.config), domain).run,
    })


if __name__ == "__main__":
    sys.exit(main())
