"""Secrets at rest (SPEC §7): the embedded broker keeps each message until it is consumed (a
dead-lettered one for good), and a ReservationAccepted carries the purchaser's cancel token and
e-mail. What it writes is mode 0600, whatever the umask or the folder's mode."""
from __future__ import annotations

import os
import stat

from kombu import Connection, Exchange, Queue


def test_a_message_kept_by_the_embedded_broker_is_mode_0600(tmp_path):
    from shared.embedded_broker import Transport

    folder = tmp_path / "broker"
    folder.mkdir(mode=0o755)
    old_umask = os.umask(0o022)
    connection = Connection("filesystem://", transport=Transport, transport_options={
        "data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(folder / "control")})
    try:
        exchange = Exchange("events", type="topic")
        queue = Queue("mailer", exchange=exchange, routing_key="ReservationAccepted")
        producer = connection.Producer(exchange=exchange)
        producer.publish({"cancel_token": "secret-token"}, routing_key="ReservationAccepted", declare=[queue])
        assert queue(connection.default_channel).queue_declare(passive=True).message_count == 1  # kept until consumed
        modes = {path.name: stat.S_IMODE(os.stat(path).st_mode) for path in folder.iterdir()
                 if path.is_file() and not path.name.endswith(".lock") and path.suffix != ".exchange"}
    finally:
        connection.release()
        os.umask(old_umask)
    assert "broker.db" in modes
    assert {name: oct(mode) for name, mode in modes.items() if mode & 0o077} == {}
