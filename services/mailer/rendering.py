"""Templates to messages: plain text with an HTML alternative, one pair of files per kind.

`<kind>.txt` starts with a `Subject:` line, then a blank line, then the body;
`<kind>.html` is the HTML alternative. COBUY_MAIL_TEMPLATE_DIR may hold an operator's
own versions, which win over the shipped ones.
"""
from __future__ import annotations

import csv
import io
import os
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared import clock
from shared.money import format_money

SHIPPED = Path(__file__).parent / "templates"


def _when(value: str | datetime) -> str:
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    return clock.to_utc(instant).strftime("%Y-%m-%d %H:%M:%S UTC")


class Renderer:
    def __init__(self, mail_from: str, public_url: str):
        self.mail_from = mail_from
        self.public_url = public_url
        loaders = [FileSystemLoader(str(SHIPPED))]
        if os.environ.get("COBUY_MAIL_TEMPLATE_DIR"):
            loaders.insert(0, FileSystemLoader(os.environ["COBUY_MAIL_TEMPLATE_DIR"]))
        common = dict(loader=ChoiceLoader(loaders), undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.text_env = Environment(autoescape=False, **common)
        self.html_env = Environment(autoescape=select_autoescape(["html"]), **common)
        for env in (self.text_env, self.html_env):
            env.filters["money"] = format_money
            env.filters["when"] = _when

    def render(self, template: str, context: dict, recipient: str, recipient_name: str, extra: dict,
               message_id: str) -> EmailMessage:
        values = {**context, **extra, "recipient": recipient, "recipient_name": recipient_name,
                  "public_url": self.public_url,
                  "offer_url": f"{self.public_url}/offers/{context.get('offer_id', '')}"}
        if "cancel_token" in extra:
            values["cancel_url"] = (f"{self.public_url}/reservations/{extra['reservation_id']}"
                                    f"/cancel?token={extra['cancel_token']}")
        text = self.text_env.get_template(f"{template}.txt").render(values)
        head, _, body = text.partition("\n\n")
        if not head.startswith("Subject:"):
            raise ValueError(f"{template}.txt must start with a Subject: line")
        message = EmailMessage()  # the default policy refuses CR/LF in headers: no header injection
        message["Subject"] = head[len("Subject:"):].strip()
        message["From"] = self.mail_from
        message["To"] = formataddr((recipient_name, recipient))
        message["Message-ID"] = message_id
        message["Date"] = format_datetime(clock.now())
        message.set_content(body)
        message.add_alternative(self.html_env.get_template(f"{template}.html").render(values), subtype="html")
        if template == "concluded_holder":
            message.add_attachment(purchasers_csv(context["purchasers"]).encode(), maintype="text",
                                   subtype="csv", filename="purchasers.csv")
        return message


def purchasers_csv(purchasers: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "email", "reservation_id"])
    for p in purchasers:
        # A leading =, +, - or @ would be a formula in a spreadsheet: neutralise it.
        writer.writerow([("'" + v) if v[:1] in "=+-@" else v for v in (p["name"], p["email"], p["id"])])
    return out.getvalue()
