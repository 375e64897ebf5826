"""Messaging over kombu: publisher with confirms and `mandatory`, consumer with manual acks
after the database commit, bounded prefetch, JSON only, and a dead-letter queue."""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable

from kombu import Connection, Exchange, Producer, Queue
from kombu import Consumer as KombuConsumer
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared import doorbell, logs, metrics, topology
from shared.config import Config
from shared.envelope import Envelope
from shared.failures import Nacked, describe, is_transient, where
from shared.outbox import first_deliveries, first_delivery

log = logging.getLogger(__name__)

Handler = Callable[[Session, Envelope], None]


class Together:
    """A handler that applies a run of events of its type in one go (`many`: a statement per table
    for them all, say), where a consumer applies events together (`Consumer(burst=…)`); on its own,
    an event is a run of one. So there is one way to apply the event, not two to keep alike.
    `many` sets each event's correlation id while it works on it (`logs.set_correlation_id`): what
    it logs of an event must name that event's request, as a plain handler's logs do."""

    def __init__(self, many: Callable[[Session, list[Envelope]], None]):
        self.many = many

    def __call__(self, session: Session, envelope: Envelope) -> None:
        self.many(session, [envelope])


CONFIRM_TIMEOUT = 10.0


class Unroutable(RuntimeError):
    """The broker returned a mandatory message: no queue is bound for its type."""


class Bus:
    """Where the broker is, and the topology every process declares."""

    def __init__(self, config: Config, subscriptions: dict[str, tuple[str, ...]] | None = None):
        self.config = config
        self.subscriptions = topology.SUBSCRIPTIONS if subscriptions is None else subscriptions
        prefix = config.exchange_prefix
        self.embedded = config.embedded_broker
        self.exchange = Exchange(topology.exchange_name(prefix), type="topic", durable=True)
        self.dead_exchange = Exchange(topology.dead_letter_exchange_name(prefix), type="topic", durable=True)
        # quorum queues (replicated on a cluster) are durable and non-exclusive, as all of ours are
        kind = {"x-queue-type": "quorum"} if config.amqp_queue_type == "quorum" and not self.embedded else {}
        self.dead_queue = Queue(
            topology.dead_letter_queue_name(prefix), exchange=self.dead_exchange, routing_key="#", durable=True,
            queue_arguments=kind or None,
        )
        dlx_args = None if self.embedded else {"x-dead-letter-exchange": self.dead_exchange.name, **kind}
        self.queues: dict[tuple[str, str], Queue] = {
            (service, event_type): Queue(
                topology.queue_name(prefix, service, event_type),
                exchange=self.exchange,
                routing_key=event_type,
                durable=True,
                queue_arguments=dlx_args,
            )
            for service, types in self.subscriptions.items()
            for event_type in types
        }

    def connect(self, confirm_each: bool = True) -> Connection:
        """confirm_each: every publish waits for its own confirm (the Publisher batches instead)."""
        if self.embedded:
            folder = self.config.broker_folder()
            folder.mkdir(parents=True, exist_ok=True)
            from shared.embedded_broker import Transport

            return Connection(
                "filesystem://",
                transport=Transport,
                transport_options={
                    "data_folder_in": str(folder),  # broker.db is kept here
                    "data_folder_out": str(folder),
                    # bindings live here; kombu's default is a folder relative to the working directory
                    "control_folder": str(folder / "control"),
                    "polling_interval": 0.05,
                },
            )
        return Connection(
            self.config.amqp_url,
            heartbeat=self.config.amqp_heartbeat,
            connect_timeout=5,
            transport_options={"confirm_publish": confirm_each},
        )

    def declare(self, connection: Connection) -> None:
        channel = connection.default_channel
        self.exchange(channel).declare()
        self.dead_exchange(channel).declare()
        self.dead_queue(channel).declare()
        for queue in self.queues.values():
            queue(channel).declare()

    def ping(self) -> None:
        with self.connect() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)


class Publisher:
    """Publishes envelopes; returns only when the broker confirmed every one of them (AMQP).

    Confirms are awaited per call, not per message: a batch of 200 events costs one wait for
    the broker's acks instead of 200 round trips (2.2k msg/s one by one against 20k batched,
    measured here). Any nack, any returned (unroutable) message or a time-out fails the whole
    call, and the caller publishes the batch again: consumers' inboxes absorb the repeats.
    """

    def __init__(self, bus: Bus):
        self.bus = bus
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._returned: list[str] = []
        self._next_tag = 1
        self._unconfirmed: set[int] = set()
        self._nacked = False
        self._next_heartbeat = 0.0

    def _ensure(self) -> Producer:
        if self._producer is None:
            connection = self.bus.connect(confirm_each=False)
            connection.ensure_connection(max_retries=3)
            self.bus.declare(connection)
            channel = connection.channel()
            # Returned (unroutable) messages and confirms exist on AMQP only.
            on_return = None
            if not self.bus.embedded:
                channel.confirm_select()
                channel.events["basic_ack"].add(self._settle)
                channel.events["basic_nack"].add(self._on_nack)
                self._next_tag, self._unconfirmed, self._nacked = 1, set(), False
                on_return = self._on_return
            self._connection = connection
            self._producer = Producer(channel, exchange=self.bus.exchange, on_return=on_return)
        return self._producer

    def _on_return(self, exception, exchange, routing_key, message) -> None:
        self._returned.append(routing_key)

    def _settle(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._unconfirmed = {t for t in self._unconfirmed if t > delivery_tag}
        else:
            self._unconfirmed.discard(delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked = True
        self._settle(delivery_tag, multiple)

    def _publish(self, producer: Producer, body, **kwargs) -> None:
        producer.publish(body, delivery_mode=2, **kwargs)
        if not self.bus.embedded:
            self._unconfirmed.add(self._next_tag)
            self._next_tag += 1

    def _confirmed(self) -> None:
        """Wait until the broker has confirmed everything published on this channel."""
        if self.bus.embedded:
            return
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while self._unconfirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self._unconfirmed)} publishes unconfirmed after {CONFIRM_TIMEOUT} s")
            try:
                self._producer.channel.connection.drain_events(timeout=remaining)
            except socket.timeout:
                continue
        if self._nacked:
            self._nacked = False
            raise Nacked("the broker refused (nacked) a publish")

    def heartbeat(self) -> None:
        """Keep an idle connection alive: read what the broker sent (its heartbeats: else the client
        declares the connection dead) and send ours when due, or the broker closes it after two
        silent intervals. Call it freely while idle: it acts at most four times an interval.
        A connection found dead is dropped quietly; the next publish opens a new one."""
        if self._connection is None or self.bus.embedded or time.monotonic() < self._next_heartbeat:
            return
        self._next_heartbeat = time.monotonic() + min(1.0, self.bus.config.amqp_heartbeat / 4)
        try:
            try:
                self._connection.drain_events(timeout=0.001)
            except socket.timeout:
                pass
            self._connection.heartbeat_check()
        except Exception as exc:  # whatever a dead socket raises
            log.info("idle publisher connection lost (%s); reconnecting on the next publish", describe(exc))
            self.reset()

    def publish_many(self, envelopes: list[Envelope]) -> None:
        producer = self._ensure()
        self._returned.clear()
        for envelope in envelopes:
            self._publish(
                producer,
                envelope.to_dict(),
                routing_key=envelope.type,
                serializer="json",
                mandatory=not self.bus.embedded,
                message_id=envelope.id,
                type=envelope.type,
                correlation_id=envelope.correlation_id,
            )
        self._confirmed()  # a return comes before its message's ack
        if self._returned:
            raise Unroutable(f"no queue is bound for {', '.join(sorted(set(self._returned)))}")

    def publish_raw(self, exchange: Exchange, routing_key: str, body, content_type, content_encoding, headers) -> None:
        producer = self._ensure()
        self._publish(producer, body, exchange=exchange, routing_key=routing_key, content_type=content_type,
                      content_encoding=content_encoding, headers=headers)
        self._confirmed()

    def reset(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # the connection is already broken; we drop it either way
                pass
        self._connection = None
        self._producer = None


class Consumer:
    """Applies each event in one transaction with its inbox row, then acks.

    A redelivered event finds its inbox row and has no second effect. An event that cannot
    be read, or whose handler keeps failing, goes to the dead-letter queue (never dropped).
    Failures are sorted by `is_transient`: a database outage is waited out for as long as it
    lasts; another transient failure (the broker, another service restarting) for
    `transient_seconds` with backoff; anything else is tried `attempts` times, quickly.

    With `burst` > 1, the events already waiting in the connection's buffer when one arrives (up to
    `burst` of them) are applied together, each with its own inbox row, in one transaction: one
    BEGIN and one COMMIT (one WAL flush) for them all, where a stream of small events spent most of
    its database time. Then each is acked. If that transaction fails, nothing of it stays, and
    each event is applied again on its own as above: a poison event still fails, and dead-letters,
    alone. Nothing waits for a burst to fill: it is what has arrived (docs/adr/0016-consumer-bursts.md).
    """

    def __init__(
        self,
        bus: Bus,
        service: str,
        sessions: sessionmaker[Session],
        inbox,
        handlers: dict[str, Handler],
        prefetch: int = 50,
        attempts: int = 3,
        transient_seconds: float = 60.0,
        burst: int = 1,
    ):
        self.bus = bus
        self.service = service
        self.sessions = sessions
        self.inbox = inbox
        self.handlers = handlers
        self.prefetch = prefetch
        self.attempts = attempts
        self.transient_seconds = transient_seconds
        self.burst = max(1, min(burst, prefetch))  # more than the broker lends us can never be waiting
        self._waiting: list[tuple[Handler, Envelope, object]] = []  # delivered, not applied yet
        self._stop = threading.Event()
        self._connection: Connection | None = None
        self._dead_publisher = Publisher(bus)
        unknown = set(handlers) - set(bus.subscriptions.get(service, ()))
        if unknown:
            raise ValueError(f"{service} handles {sorted(unknown)} but the topology does not subscribe it")

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        backoff = 0.2
        # heartbeat_check must run at least twice per heartbeat interval
        tick = min(1.0, self.bus.config.amqp_heartbeat / 4) if self.bus.config.amqp_heartbeat else 1.0
        while not stop.is_set():
            try:
                with self.bus.connect() as connection:
                    connection.ensure_connection(max_retries=3)
                    self.bus.declare(connection)
                    self._connection = connection
                    queues = [self.bus.queues[(self.service, t)] for t in self.handlers]
                    with KombuConsumer(
                        connection.channel(),
                        queues=queues,
                        callbacks=[self._on_message],
                        on_decode_error=self._on_decode_error,
                        accept=["json"],
                        prefetch_count=self.prefetch,
                    ):
                        backoff = 0.2
                        while not stop.is_set():
                            try:
                                connection.drain_events(timeout=tick)
                            except socket.timeout:
                                connection.heartbeat_check()
                                self._dead_publisher.heartbeat()
                            self._gather(connection)
                            self._apply_waiting()
            except Exception as exc:
                log.warning("consumer %s lost its connection (%s); reconnecting in %.1fs",
                            self.service, describe(exc), backoff)
                self._dead_publisher.reset()
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self._waiting.clear()  # unacked: the broker gives them to the next connection
                self._connection = None

    def _gather(self, connection: Connection) -> None:
        """Take what has already arrived, without waiting, until a burst is full."""
        while self._waiting and len(self._waiting) < self.burst:
            try:
                connection.drain_events(timeout=0)
            except socket.timeout:
                return

    def _on_decode_error(self, message, exc) -> None:
        self._dead_letter(message, f"undecodable: {describe(exc)}", "?")

    def _on_message(self, body, message) -> None:
        try:
            envelope = Envelope.from_dict(body)
        except Exception as exc:  # whatever it is, it is this message's fault, not the burst's around it
            self._dead_letter(message, f"malformed envelope: {describe(exc)}", "?")
            return
        handler = self.handlers.get(envelope.type)
        if handler is None:
            self._dead_letter(message, f"{self.service} has no handler for {envelope.type}", envelope.type)
            return
        self._waiting.append((handler, envelope, message))
        if len(self._waiting) >= self.burst:
            self._apply_waiting()

    def _apply_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        if len(waiting) > 1 and self._apply_together(waiting):
            for _, _, message in waiting:
                self.ack(message)
            return
        for handler, envelope, message in waiting:
            self._apply_alone(handler, envelope, message)

    def _apply_together(self, waiting: list) -> bool:
        """All of them in one transaction, or (False) none of them. Their inbox rows go in one
        statement; then the new ones are applied in the order they came, a run of one type at once
        where its handler can (`Together`)."""
        keys = [(f"{self.service}.{envelope.type}", envelope.id) for _, envelope, _ in waiting]
        try:
            with self.sessions.begin() as session:
                claimed = first_deliveries(session, self.inbox, keys)
                fresh, run = [], []
                for (handler, envelope, _), key in zip(waiting, keys):
                    fresh.append(key in claimed)
                    claimed.discard(key)  # the same event twice in one burst: the second is a duplicate
                    if not fresh[-1]:
                        continue
                    if run and run[0][0] is not handler:
                        self._apply_run(session, run)
                        self._send_heartbeat()  # a burst is silence towards the broker: it must hear from us
                        run = []
                    run.append((handler, envelope))
                if run:
                    self._apply_run(session, run)
        except Exception as exc:
            log.info("%s: %d events failed together (%s); applying each on its own",
                     self.service, len(waiting), describe(exc))
            return False
        for (_, envelope, _), first in zip(waiting, fresh):
            (metrics.EVENTS_CONSUMED if first else metrics.EVENTS_DUPLICATE).labels(envelope.type).inc()
        doorbell.ring()
        return True

    def _apply_run(self, session: Session, run: list[tuple[Handler, Envelope]]) -> None:
        handler = run[0][0]
        if isinstance(handler, Together):
            handler.many(session, [envelope for _, envelope in run])
            return
        for handler, envelope in run:
            token = logs.set_correlation_id(envelope.correlation_id)
            try:
                handler(session, envelope)
            finally:
                logs.reset_correlation_id(token)
            self._send_heartbeat()

    def _apply_alone(self, handler: Handler, envelope: Envelope, message) -> None:
        token = logs.set_correlation_id(envelope.correlation_id)
        try:
            outcome = self._apply(handler, envelope)
        finally:
            logs.reset_correlation_id(token)
        if outcome == "applied":
            self.ack(message)
        elif outcome == "failed":
            self._dead_letter(message, self._last_error, envelope.type)
        # "stopping": left unacked on purpose; the broker redelivers it to the next consumer.

    def _apply(self, handler: Handler, envelope: Envelope) -> str:
        consumer = f"{self.service}.{envelope.type}"
        failures = 0
        delay = 0.1
        transient_since: float | None = None
        while True:
            try:
                with self.sessions.begin() as session:
                    if first_delivery(session, self.inbox, consumer, envelope.id):
                        handler(session, envelope)
                        metrics.EVENTS_CONSUMED.labels(envelope.type).inc()
                    else:
                        metrics.EVENTS_DUPLICATE.labels(envelope.type).inc()
                doorbell.ring()  # what it planned (mails, webhooks, dated steps) is committed: look now
                return "applied"
            except Exception as exc:
                self._last_error = describe(exc)
                if is_transient(exc):
                    transient_since = transient_since or time.monotonic()
                    if self._outlasted(exc, transient_since):
                        log.error("%s: event %s still failing after %.0fs: %s", consumer, envelope.id,
                                  time.monotonic() - transient_since, self._last_error)
                        return "failed"
                    log.warning("%s: transient failure on event %s (%s); retrying in %.1fs",
                                consumer, envelope.id, self._last_error, delay)
                else:
                    failures += 1
                    log.error("%s failed on event %s (attempt %d): %s\n%s",
                              consumer, envelope.id, failures, self._last_error, where(exc))
                    if failures >= self.attempts:
                        return "failed"
            if self._pause(delay):
                return "stopping"
            delay = min(delay * 2, 5.0)

    def _outlasted(self, exc: BaseException, since: float) -> bool:
        """A database outage is waited out however long it lasts (nothing can be applied
        meanwhile); any other transient failure for `transient_seconds`."""
        if isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
            return False
        return time.monotonic() - since > self.transient_seconds

    def _pause(self, seconds: float) -> bool:
        """Wait before the next try, keeping the connection alive; True when asked to stop."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(remaining, 1.0)):
                return True
            self._send_heartbeat()
        return self._stop.is_set()

    def _send_heartbeat(self) -> None:
        """Inside a delivery we cannot read the socket, but the broker only needs to hear from us."""
        connection = self._connection
        if connection is None or self.bus.embedded or connection._connection is None:
            return
        if time.monotonic() < self._next_heartbeat:
            return
        self._next_heartbeat = time.monotonic() + max(0.25, self.bus.config.amqp_heartbeat / 4)
        try:
            connection._connection.send_heartbeat()
        except Exception:  # the connection is gone: the ack will fail and the broker redelivers
            pass

    def ack(self, message) -> None:
        """Acknowledge after the commit. A seam for fault-injection tests."""
        message.ack()

    _last_error = ""
    _next_heartbeat = 0.0

    def _dead_letter(self, message, reason: str, event_type: str) -> None:
        log.error("dead-lettering a message from %s: %s", self.service, reason)
        headers = dict(message.headers or {})
        headers.update(
            {
                "x-cobuy-error": reason[:1000],
                "x-cobuy-consumer": self.service,
                "x-cobuy-routing-key": message.delivery_info.get("routing_key", ""),
            }
        )
        self._dead_publisher.publish_raw(
            self.bus.dead_exchange,
            message.delivery_info.get("routing_key", "unknown") or "unknown",
            message.body,
            message.content_type,
            message.content_encoding,
            headers,
        )
        metrics.EVENTS_DEAD.labels(event_type).inc()
        message.ack()
