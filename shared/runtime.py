"""One service's infrastructure, wired once: engine, sessions, bus, relay, consumer, readiness."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

from sqlalchemy import Engine, Table
from sqlalchemy.orm import Session, sessionmaker

from shared import config as config_module, db, migrations
from shared.config import Config
from shared.envelope import Envelope
from shared.messaging import Bus, Consumer, Handler, Publisher
from shared.outbox import Relay


@dataclass
class Runtime:
    service: str
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    bus: Bus

    @classmethod
    def create(cls, service: str, config: Config | None = None, pool_size: int = 5) -> "Runtime":
        config = config or config_module.get()
        engine = db.make_engine(config.database_url_for(service), service, pool_size=pool_size,
                                search_path=config.database_search_path)
        return cls(service, config, engine, db.session_factory(engine), Bus(config))

    def migrate(self, migrations_dir: Path) -> None:
        migrations.upgrade(self.engine, migrations_dir, self.service)

    def prepare_schema(self, migrations_dir: Path) -> None:
        """At start: migrate (`cobuy up`), or only check where a Job migrates per release."""
        if self.config.migrations == "job":
            migrations.require_current(self.engine, migrations_dir)
        else:
            self.migrate(migrations_dir)

    def ready_checks(self) -> list[Callable[[], None]]:
        """The pod's own ability to serve: its database. Not the broker: a broker outage is what the
        outbox rides out (cobuy_broker_connected and the outbox lag tell it), and a probe that opened an
        AMQP connection each time would take every pod out of service at once for a blip."""
        def database() -> None:
            db.ping(self.engine)

        return [database]

    def relay(self, outbox: Table, on_sent: Callable[[Session, list[Envelope]], None] | None = None,
              follow_up: Callable[[], float | None] | None = None) -> Relay:
        return Relay(
            self.sessions, outbox, Publisher(self.bus), self.config.relay_poll_seconds, on_sent=on_sent,
            follow_up=follow_up, retention=timedelta(days=self.config.outbox_retention_days),
        )

    def rate_limiter(self, table: Table):
        from shared.ratelimit import RateLimiter, parse

        return RateLimiter(self.sessions, table, parse(self.config.rate_limit))

    def consumer(self, inbox: Table, handlers: dict[str, Handler], burst: int = 1) -> Consumer:
        return Consumer(self.bus, self.service, self.sessions, inbox, handlers,
                        transient_seconds=self.config.transient_retry_seconds, burst=burst)

