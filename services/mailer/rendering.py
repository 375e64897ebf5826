"""Templates to messages: plain text with an HTML alternative, one pair of files per kind.

`<kind>.txt` starts with a `Subject:` line, then a blank line, then the body;
`<kind>.html` is the HTML alternative. COBUY_MAIL_TEMPLATE_DIR may hold an operator's
own versions, which win over the shipped ones.

Each mail speaks its recipient's language (SPEC §12): the templates mark their words with
`_()` / `ngettext()` (as Jinja's i18n extension does, newstyle), translated from `translations/<lang>` (compiled
by `make install`); money and instants are written the language's way.
"""
from __future__ import annotations

import json
import os
import random
import re
import sys
import textwrap
import time
import unicodedata
from datetime import datetime
from email import quoprimime
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from pathlib import Path

from babel.support import NullTranslations, Translations
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, meta, nodes, select_autoescape
from markupsafe import Markup, escape

from shared import clock, languages
from shared.money import format_money
from shared.spreadsheet import safe_csv

SHIPPED = Path(__file__).parent / "templates"
TRANSLATIONS = Path(__file__).parent / "translations"


def _when(value: str | datetime, lang: str = languages.DEFAULT) -> str:
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    return languages.format_instant(clock.to_utc(instant), lang)


@lru_cache(maxsize=1024)
def label(words: str, width: int) -> str:
    """`words:` padded to `width` columns, so the values after a column of labels line up in any
    language (a Japanese character takes two columns in a fixed-width font)."""
    columns = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in words) + 1
    return f"{words}:" + " " * max(width - columns, 1)


@lru_cache(maxsize=4096)  # the same paragraph for every recipient of a batch
def _wrap(text: str) -> str:
    return "\n".join(textwrap.wrap(text, 80, break_long_words=False, break_on_hyphens=False))


def _gettext_functions(catalog: NullTranslations, escaped: type) -> dict:
    """`_()` and `ngettext()` as Jinja's i18n extension calls them "newstyle" (values by name, escaped in
    HTML, `num` given to plurals), as plain functions: the extension's context-passing wrappers
    cost a mail four times its rendering, which a 10,000-seller invitation feels."""
    def gettext(message: str, **values) -> str:
        return escaped(catalog.gettext(message)) % values

    def ngettext(singular: str, plural: str, num: int, **values) -> str:
        return escaped(catalog.ngettext(singular, plural, num)) % {"num": num, **values}

    return {"_": gettext, "gettext": gettext, "ngettext": ngettext}


def translations(lang: str) -> NullTranslations:
    """The compiled catalog of `lang`; English is the templates' own words."""
    found = Translations.load(str(TRANSLATIONS), [lang])
    if lang != languages.DEFAULT and not isinstance(found, Translations):
        raise RuntimeError(f"no compiled {lang} mail catalog under {TRANSLATIONS}: run `make install`")
    return found


class Renderer:
    def __init__(self, mail_from: str, public_url: str, template_dir: Path | None = None):
        self.mail_from = mail_from
        self.envelope_from = parseaddr(mail_from)[1]
        self.from_header = _address(*parseaddr(mail_from))
        self.public_url = public_url
        loaders = [FileSystemLoader(str(SHIPPED))]
        if template_dir:
            loaders.insert(0, FileSystemLoader(str(template_dir)))
        self.loader = ChoiceLoader(loaders)
        self.folders = [str(template_dir), str(SHIPPED)] if template_dir else [str(SHIPPED)]
        self.envs = {lang: self._environments(lang) for lang in languages.LANGUAGES}
        self._shared: dict[tuple, _Shared | None] = {}  # see _shared_parts
        self._variables: dict[tuple[str, str], tuple[frozenset[str], frozenset[str]]] = {}
        self._files: tuple = ()  # the template files as last seen: an operator's edit empties the caches
        self._files_seen_at = 0.0

    def _environments(self, lang: str) -> tuple[Environment, Environment]:
        """(text, html) for one language: its words, money and instants."""
        common = dict(loader=self.loader, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        text_env = Environment(autoescape=False, **common)
        html_env = Environment(autoescape=select_autoescape(["html"]), **common)
        catalog = translations(lang)
        for env, escaped in ((text_env, str), (html_env, Markup)):
            env.globals.update(_gettext_functions(catalog, escaped))
            env.filters["money"] = lambda minor, currency: format_money(minor, currency, lang)
            env.filters["when"] = lambda value: _when(value, lang)
            env.filters["label"] = label
            env.filters["wrap"] = (lambda text: text) if lang == "ja" else _wrap  # Japanese breaks anywhere
        return text_env, html_env

    def _parts(self, template: str, context: dict, recipient: str, recipient_name: str,
               extra: dict, links: dict | None = None) -> tuple[str, str, str]:
        """(subject, text body, html body) of one mail. `links`: the recipient's own links as they
        are (stand-ins, when a mail is rendered once for many), instead of made from `extra`."""
        lang = languages.supported(extra.get("lang")) or languages.DEFAULT
        text_env, html_env = self.envs[lang]
        values = {**context, **extra, "lang": lang, "recipient": recipient, "recipient_name": recipient_name,
                  "public_url": self.public_url,
                  "offer_url": f"{self.public_url}/offers/{context.get('offer_id', '')}",
                  **(self._links(extra) if links is None else links)}
        text = text_env.get_template(f"{template}.txt").render(values)
        head, _, body = text.partition("\n\n")
        if not head.startswith("Subject:"):
            raise ValueError(f"{template}.txt must start with a Subject: line")
        html = html_env.get_template(f"{template}.html").render(values)
        return head[len("Subject:"):].strip(), body, html

    def _links(self, extra: dict) -> dict:
        """The recipient's own links: cancel, and verify for a pending reservation (SPEC §10)."""
        links = {}
        for kind in _LINKS:
            if f"{kind}_token" in extra:
                links[f"{kind}_url"] = (f"{self.public_url}/reservations/{extra['reservation_id']}"
                                        f"/{kind}?token={extra[f'{kind}_token']}")
        return links

    def render(self, template: str, context: dict, recipient: str, recipient_name: str, extra: dict,
               message_id: str) -> Message:
        subject, body, html = self._parts(template, context, recipient, recipient_name, extra)
        # The compat32 MIME classes: a quarter of the CPU of EmailMessage's header registry, which
        # matters at 10,000 mails. They do not refuse CR/LF in a header, so _header does.
        message = MIMEMultipart("alternative", _subparts=[_text(body, "plain"), _text(html, "html")])
        if template == "concluded_holder":
            attachment = _text(purchasers_csv(context["purchasers"]), "csv")
            attachment.add_header("Content-Disposition", "attachment", filename="purchasers.csv")
            message = MIMEMultipart("mixed", _subparts=[message, attachment])
        message["Subject"] = _header(subject)
        message["From"] = self.from_header
        message["To"] = _address(recipient_name, recipient)
        message["Message-ID"] = _header(message_id)
        message["Date"] = format_datetime(clock.now())
        return message

    def render_wire(self, template: str, context: dict, recipient: str, recipient_name: str, extra: dict,
                    message_id: str, batch: str | None = None) -> bytes:
        """The mail as SMTP carries it (CRLF lines): the very bytes `render(...).as_bytes(policy=WIRE)`
        gives, but written directly. The email package's generator and its header folding cost two
        thirds of a mail's CPU; a text + HTML pair needs neither (tests/unit/test_mail_rendering.py
        compares the two byte for byte). The holder's mail with its attachment takes the long way.

        `batch`: the id of the batch whose `context` this is (the same for all its recipients). Then
        the templates are rendered once per batch and language, not once per recipient, when all a
        recipient changes in them is the name (see `_shared_parts`)."""
        if template == "concluded_holder":
            return self.render(template, context, recipient, recipient_name, extra, message_id).as_bytes(policy=WIRE)
        links = self._links(extra)
        shared = self._shared_parts(template, context, extra, links, batch) if batch is not None else None
        if shared is not None:
            subject, body, html = shared.fill(recipient_name, links)
        else:
            subject, body, html = self._parts(template, context, recipient, recipient_name, extra)
        return wire_alternative(
            [("Subject", _header(subject)), ("From", self.from_header), ("To", _address(recipient_name, recipient)),
             ("Message-ID", _header(message_id)), ("Date", format_datetime(clock.now()))],
            body, html, _boundary())

    def _shared_parts(self, template: str, context: dict, extra: dict, own_links: dict[str, str],
                      batch: str) -> "_Shared | None":
        """The mail in one language with stand-ins for the name and the recipient's own links, or None
        when the templates read anything else of the recipient (an address, a token: `extra`), or do
        anything to the name or a link but write it (wrap it, test it): checked once per key by
        rendering with three sets of stand-ins (long, short, empty or odd) and requiring the same
        output but for them, written as they are in the text and escaped in the HTML.

        The key: a batch and the language, for a fan-out (every recipient shares the batch's context);
        for a mail with links of the recipient's own (a reservation's confirmation: each is a batch of
        one), the context itself, which every reservation of an offer under one condition shares."""
        self._notice_edits()
        lang = languages.supported(extra.get("lang")) or languages.DEFAULT
        reads, plain = self._reads(template, lang)
        links = tuple(name for name in own_links if name in reads)
        # the context as it came (its key order is what a template's loop shows), and which extras
        # this recipient has: one with a verify token never shares the rendering of one without
        key = (template, batch, lang) if not links else (
            template, json.dumps(context, default=str), lang, links, tuple(sorted(extra)))
        found = self._shared.get(key, _MISSING)
        if found is not _MISSING:
            return found
        shared = None
        # a link is only ever written as it is ({{ cancel_url }}) or tested for being there: a filter
        # on it could treat every stand-in alike and a real link otherwise
        if not (reads & ({"recipient"} | (extra.keys() - {"lang"}))) and set(links) <= plain:
            stand_ins = [(name, {link: values[i] for i, link in enumerate(links)})
                         for name, values in zip(_STAND_INS, _LINK_STAND_INS)]
            renders = [self._parts(template, context, "stand-in@invalid", name, {"lang": lang}, own)
                       for name, own in stand_ins]
            first = _Shared(renders[0], stand_ins[0][1])
            if all(first.fill(name, own) == other for (name, own), other in zip(stand_ins[1:], renders[1:])):
                shared = first
        if len(self._shared) >= 512:
            self._shared.clear()
        self._shared[key] = shared
        return shared

    def _reads(self, template: str, lang: str) -> tuple[frozenset[str], frozenset[str]]:
        """(every variable the template's text and HTML, and what they extend or include, read; the
        recipient's links among them that are only ever written as they are or tested for being
        defined)."""
        if (template, lang) not in self._variables:
            names: set[str] = set()
            misused: set[str] = set()
            for env, name in zip(self.envs[lang], (f"{template}.txt", f"{template}.html")):
                todo, seen = [name], set()
                while todo:
                    current = todo.pop()
                    if current in seen:
                        continue
                    seen.add(current)
                    tree = env.parse(env.loader.get_source(env, current)[0])
                    names |= meta.find_undeclared_variables(tree)
                    misused |= _links_not_written_plainly(tree)
                    for referenced in meta.find_referenced_templates(tree):
                        if referenced is None:  # a name computed at render time: anything may be read
                            names.add("recipient")
                        else:
                            todo.append(referenced)
            self._variables[(template, lang)] = (frozenset(names), _LINK_NAMES - misused)
        return self._variables[(template, lang)]

    def _notice_edits(self) -> None:
        """An operator may edit their templates while the mailer runs (Jinja reloads an edited file):
        at most once a second, look at the files, and forget every rendering kept when one changed."""
        now = time.monotonic()
        if now - self._files_seen_at < 1.0:
            return
        self._files_seen_at = now
        files = []
        for folder in self.folders:
            for root, _dirs, names in os.walk(folder):
                for name in names:
                    try:
                        stat = os.stat(os.path.join(root, name))
                    except OSError:
                        continue
                    files.append((root, name, stat.st_mtime_ns, stat.st_size))
        files = tuple(sorted(files))
        if files != self._files:
            self._files = files
            self._shared.clear()
            self._variables.clear()


def _links_not_written_plainly(tree: nodes.Template) -> set[str]:
    """The recipient's links the template uses otherwise than `{{ link }}` or `link is defined`."""
    misused = set()
    todo = [tree]
    while todo:
        parent = todo.pop()
        for child in parent.iter_child_nodes():
            if isinstance(child, nodes.Name) and child.name in _LINK_NAMES:
                written = isinstance(parent, nodes.Output)
                tested = isinstance(parent, nodes.Test) and parent.name in ("defined", "undefined")
                if not (written or tested):
                    misused.add(child.name)
            todo.append(child)
    return misused


_MISSING = object()
# Names and links cannot hold NUL (planning.one_line makes every name printable; a link is a URL), so
# these never collide with one, nor with each other.
# Mixed case, a tag, punctuation, long and short: a filter on the name (lower, capitalize, striptags,
# truncate, replace of a common character…) changes one stand-in and not another, and the mail is
# then rendered per recipient.
_STAND_INS = ("\0<&" + "Ab" * 24 + " <b>x</b> .,;:!?'\"-_/()[]@#$%*+=~|" + "B" * 48 + "\0", "\0<&n\0", "")
_LINK_STAND_INS = (("\0<&L" + "u" * 90 + "\0", "\0<&M" + "v" * 90 + "\0"), ("\0<&l\0", "\0<&m\0"),
                   ("\0K\0", "\0J\0"))  # (cancel_url, verify_url) in each set
_LINKS = ("cancel", "verify")
_LINK_NAMES = frozenset(f"{kind}_url" for kind in _LINKS)  # as the templates read them


class _Shared:
    """A mail's (subject, text, html) rendered once, with stand-ins where the recipient's own links
    and name go."""

    def __init__(self, parts: tuple[str, str, str], links: dict[str, str]):
        self.parts = parts
        # the template variable each stand-in stands for, the links first: a name never holds theirs
        self.stand_ins = {**links, "recipient_name": _STAND_INS[0]}

    def fill(self, name: str, links: dict[str, str]) -> tuple[str, str, str]:
        subject, text, html = self.parts
        for key, stand_in in self.stand_ins.items():
            value = name if key == "recipient_name" else links[key]
            subject, text = subject.replace(stand_in, value), text.replace(stand_in, value)
            html = html.replace(str(escape(stand_in)), str(escape(value)))
        return subject, text, html


WIRE = compat32.clone(linesep="\r\n")  # smtplib sends bytes as they are: lines must end in CRLF
_PART = ('Content-Type: text/{}; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
         "Content-Transfer-Encoding: quoted-printable\r\n\r\n")


def _boundary() -> str:
    """As the email package makes them; a quoted-printable body never holds "==", so never this."""
    return "=" * 15 + str(random.randrange(sys.maxsize)) + "=="


def _wire_header(name: str, value: str | Header) -> str:
    """One header as compat32 folds it: a short ASCII line is itself; anything else is folded by it."""
    if isinstance(value, str) and value.isascii() and len(name) + 2 + len(value) <= 78 \
            and value == value.strip() and "  " not in value and "\t" not in value:
        return f"{name}: {value}\r\n"
    return WIRE.fold(name, value)


def _qp(content: str) -> str:
    """The body as MIMEText(content, subtype, utf-8 with quoted-printable) holds it, in CRLF lines.
    Quoted-printable encodes each line on its own, so each line is encoded once: the lines a batch's
    recipients share (all but the greeting) cost nothing from the second recipient on."""
    return "\r\n".join(map(_qp_line, _CRLF.split(content.encode("utf-8").decode("latin-1"))))


@lru_cache(maxsize=8192)
def _qp_line(line: str) -> str:
    return quoprimime.body_encode(line, eol="\r\n") if line else ""


_CRLF = re.compile(r"\r\n|\r|\n")


def wire_alternative(headers: list[tuple[str, str | Header]], text: str, html: str, boundary: str) -> bytes:
    """multipart/alternative of a text and an HTML part, each UTF-8 quoted-printable, with `headers`
    after the multipart's own: what MIMEMultipart + as_bytes(policy=WIRE) writes."""
    out = [WIRE.fold("Content-Type", f'multipart/alternative; boundary="{boundary}"'), "MIME-Version: 1.0\r\n"]
    out += [_wire_header(name, value) for name, value in headers]
    for subtype, content in (("plain", text), ("html", html)):
        out += ["\r\n--", boundary, "\r\n", _PART.format(subtype), _qp(content)]
    out += ["\r\n--", boundary, "--\r\n"]
    return "".join(out).encode("ascii")


_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP  # readable in any mail source view, unlike base64


def _text(content: str, subtype: str) -> MIMEText:
    return MIMEText(content, subtype, _UTF8)


def _unbroken(value: str) -> str:
    """Refuse what could inject a header: a line break inside a header value."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in a header value: {value!r}")
    return value


def _header(value: str) -> str | Header:
    """A header value, RFC 2047-encoded when not ASCII."""
    return _unbroken(value) if value.isascii() else Header(_unbroken(value), "utf-8")


def _address(name: str, address: str) -> str:
    return formataddr((_unbroken(name), _unbroken(address)), charset="utf-8")


def purchasers_csv(purchasers: list[dict]) -> str:
    return safe_csv(["name", "email", "reservation_id"], ((p["name"], p["email"], p["id"]) for p in purchasers))
