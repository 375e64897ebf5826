"""Read-your-writes across services: meeting something this service has not heard of yet.

A thing is announced by its owner's event (an offer by OfferPublished). A request can come
before that event (right after the owner's 201), and another producer's event can overtake it.
Then, one way everywhere: the use case raises `Unknown`; its entry point (`learning`) asks the
owner for the thing as published, remembers it as the event would, and runs the use case once
more. The event, arriving later, finds the thing known and changes nothing.
"""
from __future__ import annotations

from typing import Callable, TypeVar
from urllib.parse import quote

import requests
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Config
from shared.problems import Problem

T = TypeVar("T")
_http = requests.Session()


class Unknown(Problem):
    """Raised by a use case: `id` is not known here (yet). When nobody knows it either, a 404."""

    code_when_unknown, detail_when_unknown = "not_found", "No such thing."

    def __init__(self, id_: str):
        super().__init__(404, self.code_when_unknown, self.detail_when_unknown)
        self.id = id_


def published(config: Config, service: str, path: str, id_: str) -> dict | None:
    """What `service` publishes at `path`/<id> (its /internal read), or None when it has no such thing."""
    if not id_ or len(id_) > 64:
        return None
    # quoted: an id may hold a literal escape (a client's %2500 is the id "%00"), never to be decoded again
    reply = _http.get(f"{config.service_url(service)}{path}/{quote(id_, safe='')}", timeout=5)
    if reply.status_code == 404:
        return None
    reply.raise_for_status()
    return reply.json()


def committed(sessions: sessionmaker[Session], remember: Callable[[Session, dict], None]) -> Callable[[dict], None]:
    """`remember` in a transaction of its own: for an HTTP entry point, whose use case rolled back."""
    def remember_committed(found: dict) -> None:
        with sessions.begin() as session:
            remember(session, found)
    return remember_committed


def learning(run: Callable[[], T], ask: Callable[[str], dict | None], remember: Callable[[dict], None]) -> T:
    """Run a use case; when it meets something unknown, `ask` for it, `remember` the answer and run
    the use case once more. When nobody knows it either, the Unknown is raised on."""
    try:
        return run()
    except Unknown as unknown:
        found = ask(unknown.id)
        if found is None:
            raise
        remember(found)
    return run()


def learning_in_event(session: Session, run: Callable[[], None], ask: Callable[[str], dict | None],
                      remember: Callable[[Session, dict], None]) -> None:
    """`learning` for an event handler: it learns in the handler's transaction, and an event about a
    thing nobody knows changes nothing."""
    try:
        learning(run, ask, lambda found: remember(session, found))
    except Unknown:
        pass
