"""Secrets at rest (SPEC §7): the embedded broker keeps each message as a file until it is consumed
(a dead-lettered one for good), and a ReservationAccepted carries the purchaser's cancel token and
e-mail. Such a file is mode 0600, whatever the umask or the folder's mode."""
from __future__ import annotations

import os
import stat

from kombu import Connection, Exchange, Queue


def test_a_message_kept_by_the_embedded_broker_is_mode_0600(tmp_path):
    from shared.embedded_broker import AtomicTransport

    folder = tmp_path / "broker"
    folder.mkdir(mode=0o755)
    connection = Connection("filesystem://", transport=AtomicTransport, transport_options={
        "data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(folder / "control")})
    try:
        exchange = Exchange("events", type="topic")
        queue = Queue("mailer", exchange=exchange, routing_key="ReservationAccepted")
        producer = connection.Producer(exchange=exchange)
        producer.publish({"cancel_token": "secret-token"}, routing_key="ReservationAccepted", declare=[queue])
    finally:
        connection.release()
    messages = [path for path in folder.iterdir() if path.name.endswith(".msg")]
    assert messages
    assert {path.name: oct(stat.S_IMODE(os.stat(path).st_mode)) for path in messages
            if os.stat(path).st_mode & 0o077} == {}
