"""The embedded transport (shared/embedded_broker.py) between real processes: a message taken by
a process that dies, or that holds it past the visibility timeout, is delivered again; an acked
one never is; processes that declare at the same instant (as `cobuy up` starts a dozen of them)
keep every binding. kombu's stock filesystem transport fails all of these."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time

import pytest
from kombu import Connection, Exchange, Queue

from tests.support import wait_for

PROCESSES, ROUNDS = 6, 30
EVENTS = Exchange("events", type="topic")
QUEUE = Queue("q", exchange=EVENTS, routing_key="k")


def _connect(folder: str, **options) -> Connection:
    from shared.embedded_broker import Transport

    return Connection("filesystem://", transport=Transport, transport_options={
        "data_folder_in": folder, "data_folder_out": folder, "control_folder": f"{folder}/control",
        "polling_interval": 0.01, **options})


def _queue(connection: Connection) -> Queue:
    queue = QUEUE(connection.default_channel)
    queue.declare()
    return queue


def _publish(connection: Connection, *bodies: str) -> None:
    producer = connection.Producer(exchange=EVENTS)
    for body in bodies:
        producer.publish({"text": body}, routing_key="k", serializer="json")


def _take_and_hold(folder: str, taken, ack: bool) -> None:
    """In a child process: take one message, report it, ack it if asked, then wait to be killed."""
    connection = _connect(folder)
    message = _queue(connection).get(no_ack=False)
    if ack:
        message.ack()
    taken.put(message.payload["text"])
    time.sleep(120)


@pytest.fixture
def taker(tmp_path):
    """Starts a child that takes one message; yields (start, the child)."""
    context = multiprocessing.get_context("fork")
    children = []

    def start(ack: bool = False) -> tuple[str, multiprocessing.Process]:
        taken = context.Queue()
        child = context.Process(target=_take_and_hold, args=(str(tmp_path), taken, ack), daemon=True)
        child.start()
        children.append(child)
        return taken.get(timeout=30), child

    yield start
    for child in children:
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=10)


def _next_text(queue: Queue) -> str | None:
    message = queue.get(no_ack=False)
    if message is None:
        return None
    message.ack()
    return message.payload["text"]


def test_a_message_taken_by_a_process_that_is_killed_is_delivered_again(tmp_path, taker):
    connection = _connect(str(tmp_path))
    queue = _queue(connection)
    _publish(connection, "one", "two")
    held, child = taker()
    assert held == "one"
    assert _next_text(queue) == "two"  # while its taker lives, "one" is nobody else's
    assert queue.get(no_ack=False) is None
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=10)
    killed = time.monotonic()
    redelivered = wait_for(lambda: queue.get(no_ack=False), 10, what="the killed taker's message again")
    print(f"redelivered {time.monotonic() - killed:.2f} s after the SIGKILL", file=sys.stderr)
    assert redelivered.payload["text"] == "one"
    assert redelivered.delivery_info["redelivered"] is True
    redelivered.ack()
    assert queue.get(no_ack=False) is None


def test_an_acked_message_is_never_delivered_again(tmp_path, taker):
    connection = _connect(str(tmp_path), visibility_timeout=0.5)
    queue = _queue(connection)
    _publish(connection, "one")
    held, child = taker(ack=True)
    assert held == "one"
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=10)
    time.sleep(1.5)  # past the visibility timeout and a sweep
    assert queue.get(no_ack=False) is None
    assert queue.queue_declare(passive=True).message_count == 0


def test_a_message_held_past_the_visibility_timeout_by_a_stuck_process_comes_back(tmp_path, taker):
    connection = _connect(str(tmp_path), visibility_timeout=1)
    queue = _queue(connection)
    _publish(connection, "one")
    _, child = taker()
    os.kill(child.pid, signal.SIGSTOP)  # alive, but it will never ack
    assert wait_for(lambda: _next_text(queue), 10, what="the stuck taker's message again") == "one"


def test_a_requeued_message_and_the_unacked_ones_of_a_closed_channel_come_back_in_their_place(tmp_path):
    connection = _connect(str(tmp_path))
    queue = _queue(connection)
    _publish(connection, "one", "two", "three")
    queue.get(no_ack=False).requeue()
    assert _next_text(queue) == "one"
    other = _connect(str(tmp_path))
    assert _queue(other).get(no_ack=False).payload["text"] == "two"
    other.release()  # closing restores what it did not ack
    assert [_next_text(queue), _next_text(queue), _next_text(queue)] == ["two", "three", None]


def _consume_all(folder: str, seen) -> None:
    connection = _connect(folder)
    queue = _queue(connection)
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 1.0:
        text = _next_text(queue)
        if text is not None:
            seen.put(text)
            idle_since = time.monotonic()
    connection.release()


def test_concurrent_consumers_receive_each_message_exactly_once(tmp_path):
    connection = _connect(str(tmp_path))
    _queue(connection)
    _publish(connection, *(str(i) for i in range(300)))
    context = multiprocessing.get_context("fork")
    seen = context.Queue()
    workers = [context.Process(target=_consume_all, args=(str(tmp_path), seen)) for _ in range(3)]
    for worker in workers:
        worker.start()
    texts = [seen.get(timeout=30) for _ in range(300)]
    for worker in workers:
        worker.join(timeout=30)
    assert sorted(texts, key=int) == [str(i) for i in range(300)]
    assert seen.empty()


def test_messages_left_as_files_by_the_filesystem_transport_are_imported(tmp_path):
    payload = {"body": json.dumps({"text": "old"}), "content-type": "application/json",
               "content-encoding": "utf-8", "headers": {},
               "properties": {"delivery_info": {"exchange": "events", "routing_key": "k"}, "delivery_tag": "x",
                              "priority": 0, "body_encoding": "utf-8"}}
    (tmp_path / "000000000001234_0a0b.q.msg").write_text(json.dumps(payload))
    connection = _connect(str(tmp_path))
    assert _next_text(_queue(connection)) == "old"
    assert not list(tmp_path.glob("*.msg"))


def _declare(folder: str, index: int, barrier, rounds: int) -> None:
    connection = _connect(folder)
    failures = 0
    for r in range(rounds):
        barrier.wait()
        try:
            Queue(f"q{index}", exchange=Exchange(f"x{r}", type="topic"), routing_key="k")(
                connection.default_channel).declare()
        except Exception:
            failures += 1
    connection.release()
    sys.exit(min(failures, 100))


def test_concurrent_declarations_keep_every_binding(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(PROCESSES)
    workers = [context.Process(target=_declare, args=(str(tmp_path), i, barrier, ROUNDS)) for i in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0] * PROCESSES  # no declaration failed
    for r in range(ROUNDS):
        table = json.loads((tmp_path / "control" / f"x{r}.exchange").read_text())
        assert sorted(q[2] for q in table) == sorted(f"q{i}" for i in range(PROCESSES))
