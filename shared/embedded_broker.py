"""The embedded broker: a kombu transport whose messages live in one SQLite file.

kombu's filesystem transport removes a message file when a consumer takes it, so a consumer
killed between taking and acking loses the message for good. Here a message is a row: taking
it marks it with its taker (pid and process start time) and the time; the ack deletes it;
a reject with requeue, a closed channel or a dead taker puts it back where it was. Every
consumer sweeps now and then (`SWEEP_SECONDS`): rows whose taker is gone come back at once,
rows held longer than the visibility timeout come back too (the taker lives but may be stuck;
the consumers' inboxes absorb the repeat). This is kombu's Redis design (the unacked index,
`visibility_timeout`) with the index in the same table as the messages.

Every write is one SQLite transaction (WAL, `synchronous=FULL`: a publish that returned
survives a power cut, since the relay marks its outbox rows sent right after).

Bindings stay in the control folder as before: the stock `_queue_bind` creates the exchange's
table file, then locks and writes it, so a process declaring at the same moment read an empty
table, and two creating it at once each truncated the other's binding. Here the
read-modify-write holds a lock file and the new table is renamed into place.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from queue import Empty

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils.json import dumps, loads

VISIBILITY_SECONDS = 300.0  # longer than a consumer waits out a transient failure (60 s)
SWEEP_SECONDS = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    taker TEXT,
    taken_at REAL,
    deliveries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ready ON messages (queue, id) WHERE taker IS NULL;
CREATE INDEX IF NOT EXISTS taken ON messages (taker) WHERE taker IS NOT NULL;
"""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot: with the pid, a name no later
    process can take (pids are reused)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def taker_name(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid) or '?'}"


def is_alive(taker: str) -> bool:
    pid, _, started = taker.partition(":")
    if started != "?":
        return _start_time(int(pid)) == started
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _switch_to_wal(db: sqlite3.Connection, patience: float = 30.0) -> None:
    """Switching a new file to WAL needs it alone for a moment, and SQLite answers "locked" at once
    (no busy wait) while another process opens it too: try again, briefly, as the busy wait would."""
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Store:
    """The messages table of one broker folder, over one SQLite connection (shared by threads)."""

    def __init__(self, path: Path, visibility_seconds: float = VISIBILITY_SECONDS):
        self.path = path
        self.visibility_seconds = visibility_seconds
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = 0
        self._taker = ""

    def _connection(self) -> sqlite3.Connection:
        if self._db is None or self._pid != os.getpid():  # a forked child opens its own
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Messages carry cancel tokens and e-mail addresses: the file is the owner's alone (SQLite
            # gives its -wal and -shm files the database file's mode), whatever the umask.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(self.path, 0o600)
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            _switch_to_wal(db)
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            self._db, self._pid, self._taker = db, os.getpid(), taker_name()
            self._import_message_files(db)
        return self._db

    def _import_message_files(self, db: sqlite3.Connection) -> None:
        """Messages an older release left as files in the folder (`<time>_<uuid>.<queue>.msg`)."""
        for file in sorted(self.path.parent.glob("*.msg")):
            claimed = file.with_name(f".{file.name}.{os.getpid()}")
            try:
                os.replace(file, claimed)  # one process imports each file
            except OSError:
                continue
            db.execute("INSERT INTO messages (queue, payload) VALUES (?, ?)",
                       (file.name.split(".", 1)[1][:-len(".msg")], claimed.read_text()))
            claimed.unlink()

    def _run(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._connection().execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise ChannelError(f"embedded broker {self.path}: {exc}") from exc

    def put(self, queue: str, payload: dict) -> None:
        self._run("INSERT INTO messages (queue, payload) VALUES (?, ?)", (queue, dumps(payload)))

    def take(self, queue: str) -> tuple[int, int, dict] | None:
        """The oldest ready message of `queue`, marked as ours: (id, deliveries, payload)."""
        # A read first: polling an empty queue must not take SQLite's write lock.
        if not self._run("SELECT 1 FROM messages WHERE queue = ? AND taker IS NULL LIMIT 1", (queue,)):
            return None
        rows = self._run(
            "UPDATE messages SET taker = ?, taken_at = ?, deliveries = deliveries + 1 WHERE id = "
            "(SELECT id FROM messages WHERE queue = ? AND taker IS NULL ORDER BY id LIMIT 1) "
            "RETURNING id, deliveries, payload", (self._taker, time.time(), queue))
        return (rows[0][0], rows[0][1], loads(rows[0][2])) if rows else None

    def remove(self, message_id: int) -> None:
        self._run("DELETE FROM messages WHERE id = ?", (message_id,))

    def give_back(self, message_id: int) -> None:
        """Ready again, in its old place; only if still ours (it may have timed out and moved on)."""
        self._run("UPDATE messages SET taker = NULL, taken_at = NULL WHERE id = ? AND taker = ?",
                  (message_id, self._taker))

    def sweep(self) -> int:
        """Messages of dead takers, and those held past the visibility timeout, ready again."""
        restored = 0
        for (taker,) in self._run("SELECT DISTINCT taker FROM messages WHERE taker IS NOT NULL"):
            if taker != self._taker and not is_alive(taker):
                restored += len(self._run("UPDATE messages SET taker = NULL, taken_at = NULL "
                                          "WHERE taker = ? RETURNING id", (taker,)))
        restored += len(self._run("UPDATE messages SET taker = NULL, taken_at = NULL "
                                  "WHERE taker IS NOT NULL AND taken_at < ? RETURNING id",
                                  (time.time() - self.visibility_seconds,)))
        return restored

    def size(self, queue: str) -> int:
        return self._run("SELECT count(*) FROM messages WHERE queue = ? AND taker IS NULL", (queue,))[0][0]

    def purge(self, queue: str) -> int:
        return len(self._run("DELETE FROM messages WHERE queue = ? AND taker IS NULL RETURNING id", (queue,)))

    def delete_queue(self, queue: str) -> None:
        self._run("DELETE FROM messages WHERE queue = ?", (queue,))

    def close(self) -> None:
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None


def _tag(message_id: int, deliveries: int) -> str:
    return f"{message_id}.{deliveries}"  # unique per delivery, so a redelivery never shadows one held


def _message_id(delivery_tag: str) -> int:
    return int(str(delivery_tag).split(".", 1)[0])


class Channel(filesystem.Channel):
    """Messages in the SQLite store; bindings in the control folder (per-process state of kombu)."""

    def __init__(self, connection, **kwargs):
        super().__init__(connection, **kwargs)
        options = self.transport_options
        self.store = Store(Path(options.get("database") or Path(self.data_folder_in) / "broker.db"),
                           float(options.get("visibility_timeout", VISIBILITY_SECONDS)))
        self._next_sweep = 0.0
        self._no_ack_queues: set[str] = set()

    def _put(self, queue, payload, **kwargs):
        self.store.put(queue, payload)

    def _get(self, queue, timeout=None):
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + SWEEP_SECONDS
            self.store.sweep()
        taken = self.store.take(queue)
        if taken is None:
            raise Empty()
        message_id, deliveries, payload = taken
        if queue in self._no_ack_queues:
            self.store.remove(message_id)
        payload["properties"]["delivery_tag"] = _tag(message_id, deliveries)
        payload["properties"].setdefault("delivery_info", {})["redelivered"] = deliveries > 1
        return payload

    def _size(self, queue):
        return self.store.size(queue)

    def _purge(self, queue):
        return self.store.purge(queue)

    def _delete(self, queue, *args, **kwargs):
        super()._delete(queue, *args, **kwargs)
        self.store.delete_queue(queue)

    def basic_consume(self, queue, no_ack, callback, consumer_tag, **kwargs):
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_get(self, queue, no_ack=False, **kwargs):
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self.store.remove(_message_id(message.delivery_tag))
        return message

    def basic_ack(self, delivery_tag, multiple=False):
        self.store.remove(_message_id(delivery_tag))
        super().basic_ack(delivery_tag, multiple)

    def basic_reject(self, delivery_tag, requeue=False):
        if not requeue:
            self.store.remove(_message_id(delivery_tag))
        super().basic_reject(delivery_tag, requeue)  # requeue: QoS calls _restore_at_beginning

    def _restore(self, message):
        """A message rejected with requeue, or unacked when the channel closes: ready again."""
        self.store.give_back(_message_id(message.delivery_tag))

    def close(self):
        super().close()  # restores what is unacked first
        self.store.close()

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        table = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            with open(table.with_name(table.name + ".lock"), "ab") as guard:
                filesystem.lock(guard, filesystem.LOCK_EX)
                try:
                    text = table.read_text() if table.exists() else ""
                    queues = [filesystem.exchange_queue_t(*q) for q in loads(text)] if text else []
                    if entry not in queues:
                        queues.insert(0, entry)
                        staging = table.with_name(f".{table.name}.{uuid.uuid4().hex}")
                        staging.write_text(dumps(queues))
                        os.replace(staging, table)
                finally:
                    filesystem.unlock(guard)
        except OSError as exc:
            raise ChannelError(f"Cannot bind {queue!r} to {exchange!r}") from exc


class Transport(filesystem.Transport):
    Channel = Channel
    driver_type = driver_name = "cobuy-sqlite"
    # kombu keeps one state per process for its filesystem transport; a process that opens two
    # broker folders (the tests do) must not skip a binding because the other folder has it.
    states: dict[str, virtual.BrokerState] = {}

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        folder = str(client.transport_options.get("control_folder", "control"))
        self.state = self.states.setdefault(folder, virtual.BrokerState())
