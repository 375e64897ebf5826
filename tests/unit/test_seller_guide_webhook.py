"""docs/seller-guide.md's verification example, run as written against what the deliverer sends."""
from __future__ import annotations

import re

from services.mailer.webhooks.api import new_secret
from services.mailer.webhooks.delivery import signed_headers
from services.mailer.webhooks.planning import document
from tests.support import ROOT


def _example(monkeypatch, secret: str) -> dict:
    guide = (ROOT / "docs" / "seller-guide.md").read_text()
    (block,) = re.findall(r"^```python\n(.*?)^```", guide, re.S | re.M)
    assert len(block.strip().splitlines()) <= 14, "ten lines of code, give or take the imports"
    monkeypatch.setenv("COBUY_WEBHOOK_SECRET", secret)
    seen: set[str] = set()
    processed: list = []
    namespace = {"already_seen": lambda i: i in seen or seen.add(i), "process": lambda t, d: processed.append((t, d))}
    exec(compile(block, "seller-guide.md", "exec"), namespace)
    namespace["processed"] = processed
    return namespace


def test_the_guides_ten_lines_accept_a_delivery_once_and_refuse_a_forged_one(monkeypatch):
    secret = new_secret()
    example = _example(monkeypatch, secret)
    payload = document("offer.count_changed", "2030-01-01T12:00:00+00:00", {"offer_id": "o1", "count": 7})
    headers = signed_headers(secret, "msg_1", payload)

    assert example["handle"](payload.encode(), headers) == 204
    assert example["handle"](payload.encode(), headers) == 204  # the retry of the same message
    assert example["processed"] == [("offer.count_changed", {"offer_id": "o1", "count": 7})]
    forged = payload.replace('"count":7', '"count":700').encode()
    assert example["handle"](forged, headers) == 400
    assert example["handle"](payload.encode(), signed_headers(new_secret(), "msg_2", payload)) == 400
