"""kombu's filesystem transport, made safe for concurrent publishers and consumers.

The stock transport creates the message file, then locks and writes it; a consumer that lists
the folder in between moves the still-empty file away, reads nothing and deletes it: the
message is lost (seen here with three consumers on one queue). Here a message is written to a
temporary file and renamed into the queue folder, so a consumer only ever sees whole messages.

Bindings had the same flaw: the stock `_queue_bind` creates the exchange's table file, then
locks and writes it, so a process declaring at the same moment read an empty table (a JSON
error at every `make run`), and two creating it at once each truncated the other's binding.
Here the read-modify-write holds a lock file and the new table is renamed into place.
"""
from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps, loads


class AtomicChannel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000)):015d}_{uuid.uuid4()}.{queue}.msg"
        staging = os.path.join(self.data_folder_out, os.pardir, "broker-staging")
        os.makedirs(staging, exist_ok=True)
        temporary = os.path.join(staging, name)
        try:
            # 0600: an event may carry a cancel token and an e-mail (SPEC §7, secrets stay secret)
            with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add message {name!r} to the broker folder") from exc


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


class AtomicTransport(filesystem.Transport):
    Channel = AtomicChannel
