"""kombu's filesystem transport, made safe for concurrent publishers and consumers.

The stock transport creates the message file, then locks and writes it; a consumer that lists
the folder in between moves the still-empty file away, reads nothing and deletes it: the
message is lost (seen here with three consumers on one queue). Here a message is written to a
temporary file and renamed into the queue folder, so a consumer only ever sees whole messages.
"""
from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class AtomicChannel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000)):015d}_{uuid.uuid4()}.{queue}.msg"
        staging = os.path.join(self.data_folder_out, os.pardir, "broker-staging")
        os.makedirs(staging, exist_ok=True)
        temporary = os.path.join(staging, name)
        try:
            with open(temporary, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add message {name!r} to the broker folder") from exc


class AtomicTransport(filesystem.Transport):
    Channel = AtomicChannel
