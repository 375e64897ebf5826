"""Secrets at rest under the data dir (SPEC §7): a file that holds a cancel token is the purchaser's
own, mode 0600, even when the operator made the data dir beforehand with the usual 0755."""
from __future__ import annotations

import os
import quopri
import stat

from tests.conftest import own_system
from tests.support import Cobuy, wait_for


def files_holding(folder, secret: bytes) -> list:
    found = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as handle:
                    content = handle.read()
            except OSError:
                continue
            # a mail carries it quoted-printable, possibly broken over two lines
            if secret in content or secret in quopri.decodestring(content):
                found.append(path)
    return found


def test_a_mail_kept_by_the_embedded_sink_with_a_cancel_link_is_mode_0600(servers, mailbox, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)  # as `mkdir /var/lib/cobuy` leaves it
    with own_system(servers, mailbox, data_dir, tmp_path / "cobuy-up.log", [], COBUY_SMTP_URL="") as running:
        cobuy = Cobuy(running.base_url)
        reservation = cobuy.reserve(cobuy.create_offer(cobuy.register_seller())["id"]).json()
        token = reservation["cancel_token"].encode()
        holding = wait_for(lambda: files_holding(data_dir / "mail", token), 20, what="the reservation mail on disk")
        loose = {path: oct(stat.S_IMODE(os.stat(path).st_mode)) for path in files_holding(data_dir, token)
                 if os.stat(path).st_mode & 0o077}
        assert holding and not loose, loose
