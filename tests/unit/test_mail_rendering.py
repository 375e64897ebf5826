"""The mail renderer: what goes on the wire, and what it refuses."""
from __future__ import annotations

import email
import email.policy
import time

import pytest

from services.mailer.delivery import WIRE
from services.mailer.rendering import Renderer

OFFER = {"offer_id": "o1", "title": "Garden chair", "currency": "eur", "closes_at": "2030-05-01T12:00:00+00:00",
         "unit_price": 4200, "minimum_reservations": 5, "holder_name": "Hölder GmbH"}


def _render(name="Zoë Ünal", recipient="zoe@example.org", template="reservation_accepted", **context):
    renderer = Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example")
    extra = {"reservation_id": "r1", "cancel_token": "tok"} if template == "reservation_accepted" else {}
    return renderer.render(template, {**OFFER, **context}, recipient, name, extra, "<m1@cobuy.example>")


def test_a_mail_on_the_wire_has_crlf_lines_and_reads_back_with_its_facts():
    wire = _render().as_bytes(policy=WIRE)
    lines = wire.split(b"\r\n")
    assert b"\n" not in b"".join(lines) and max(len(line) for line in lines) <= 998
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert parsed["To"].addresses[0].display_name == "Zoë Ünal"
    assert parsed["Message-ID"] == "<m1@cobuy.example>"
    text = parsed.get_body(("plain",)).get_content()
    assert "Unit price:   €42.00" in text and "Hello Zoë Ünal," in text
    assert "https://cobuy.example/reservations/r1/cancel?token=tok" in text
    assert "€42.00" in parsed["Subject"] and "Garden chair" in parsed.get_body(("html",)).get_content()


def test_the_holder_gets_the_purchasers_as_a_csv_attachment():
    purchasers = [{"id": "r1", "name": "=HYPERLINK()", "email": "a@x.io"}]
    closed = {"final_count": 1, "closed_at": "2030-05-01T12:00:01+00:00", "purchasers": purchasers, "outcome": "concluded",
              "condition": {"seller_id": "s", "seller_name": "Hölder GmbH", "unit_price": 4200, "minimum_reservations": 1}}
    parsed = email.message_from_bytes(_render(template="concluded_holder", **closed).as_bytes(policy=WIRE),
                                      policy=email.policy.default)
    attachment = next(parsed.iter_attachments())
    assert attachment.get_filename() == "purchasers.csv"
    assert "'=HYPERLINK()" in attachment.get_content()


@pytest.mark.parametrize("field", ["name", "recipient"])
def test_a_line_break_in_a_header_value_is_refused(field):
    with pytest.raises(ValueError, match="line break"):
        _render(**{field: "Eve\r\nBcc: victim@example.org"})
    values = {"name": "Zoë", "recipient": "zoe@example.org", field: "Eve\r\nBcc: victim@example.org"}
    with pytest.raises(ValueError, match="line break"):  # the wire form the sender sends refuses it too
        Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example").render_wire(
            "reservation_accepted", OFFER, values["recipient"], values["name"],
            {"reservation_id": "r1", "cancel_token": "tok"}, "<m1@cobuy.example>")


CLOSED = {"final_count": 2, "closed_at": "2030-05-01T12:00:01+00:00", "outcome": "concluded",
          "purchasers": [{"id": "r1", "name": "Ann", "email": "ann@x.io"}],
          "condition": {"seller_id": "s", "seller_name": "Hölder GmbH", "seller_email": "sales@holder.example",
                        "unit_price": 4200, "minimum_reservations": 1}}


def _bodies(message) -> tuple[str, str]:
    parsed = email.message_from_bytes(message.as_bytes(policy=WIRE), policy=email.policy.default)
    return parsed.get_body(("plain",)).get_content(), parsed.get_body(("html",)).get_content()


FORM = "https://cobuy.example/dashboard/offers/o1/counter-offer?unit_price=4190&minimum_reservations=5"


def test_the_invitation_links_to_the_prefilled_counter_offer_form_above_the_curl_command():
    text, html = _bodies(_render(template="invitation", reservation_count=3, min_decrement=10))
    assert FORM in text and text.index(FORM) < text.index("curl -X POST")
    assert f'href="{FORM.replace("&", "&amp;")}"' in html and html.index("Counter-offer now") < html.index("curl")


def test_the_interception_links_to_the_form_prefilled_to_win_back_above_the_curl_command():
    taken = {"condition": {"seller_name": "Rival AG", "unit_price": 4200, "minimum_reservations": 5},
             "previous": {"unit_price": 4300, "minimum_reservations": 5}, "kind": "voluntary", "min_decrement": 10}
    text, html = _bodies(_render(template="offer_intercepted", **taken))
    assert FORM in text and text.index(FORM) < text.index("curl -X POST")
    assert f'href="{FORM.replace("&", "&amp;")}"' in html and html.index("Win it back") < html.index("curl")


def test_the_sign_in_mail_carries_its_one_time_link_and_its_end():
    text, html = _bodies(_render(template="sign_in_link", token="AbC-12_x", expires_at="2030-05-01T12:15:00+00:00"))
    link = "https://cobuy.example/sellers/sign-in/link?token=AbC-12_x"
    assert link in text and f'href="{link}"' in html and "May 1, 2030, 12:15:00\u202fPM UTC" in text


def test_the_conclusion_mail_names_the_holders_contact_address():
    text, html = _bodies(_render(template="contract_concluded", **CLOSED))
    assert "Contact:     sales@holder.example" in text
    assert 'href="mailto:sales@holder.example"' in html


def test_the_holders_conclusion_mail_says_what_happens_next():
    text, html = _bodies(_render(template="concluded_holder", **CLOSED))
    assert "What happens next" in text and "sales@holder.example to write to" in text
    assert "What happens next" in html


def test_a_conclusion_planned_before_the_contact_was_carried_still_renders():
    old = {**CLOSED, "condition": {k: v for k, v in CLOSED["condition"].items() if k != "seller_email"}}
    text, _ = _bodies(_render(template="contract_concluded", **old))
    assert "Contact:" not in text and "Hölder GmbH" in text


def test_a_pending_reservations_confirmation_carries_its_verify_link():
    renderer = Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example")
    message = renderer.render("reservation_accepted", OFFER, "zoe@example.org", "Zoë",
                              {"reservation_id": "r1", "cancel_token": "tok", "verify_token": "vtok"}, "<m@x>")
    text, html = _bodies(message)
    assert "https://cobuy.example/reservations/r1/verify?token=vtok" in text
    assert 'href="https://cobuy.example/reservations/r1/verify?token=vtok"' in html
    assert "does not count" in text


def test_the_price_drop_mail_names_the_new_condition_and_the_price_it_beat():
    context = {**OFFER, "condition": {"seller_name": "Rival AG", "unit_price": 3990, "minimum_reservations": 4},
               "was_price": 4200}
    message = _render(template="price_drop", **context)
    text, html = _bodies(message)
    assert "€39.90" in str(message["Subject"])
    assert "Unit price:   €39.90 (it was €42.00)" in text and "Seller:       Rival AG" in text
    assert "Minimum:      4 reservations" in text and "Rival AG" in html


# -- the wire form, written directly, is the email package's byte for byte --------------------------

from email.generator import Generator  # noqa: E402

from services.mailer import rendering  # noqa: E402
from tests.unit.test_translations import MAILS  # noqa: E402

NAMES = ["Ann", "Zoë Ünal", "佐藤花子", "O'Brien, \"Bob\"", "a  b\tc", " Lead", "x" * 100, "Dr. " + "Long " * 14,
         "José María de la Santísima Trinidad Fernández", "=?utf-8?q?x?=", ""]
TITLES = ["Chair", "Garden chair with a very long title that goes on and on past the folding width of headers",
          "電動自転車", "tab\there", "semi; colon, comma"]


@pytest.mark.parametrize("template", sorted(set(MAILS) - {"concluded_holder"}))
@pytest.mark.parametrize("lang", ["en", "ja"])
def test_the_wire_form_is_byte_for_byte_what_the_email_package_writes(template, lang, monkeypatch):
    monkeypatch.setattr(Generator, "_make_boundary", classmethod(lambda cls, text=None: "===============42=="))
    monkeypatch.setattr(rendering, "_boundary", lambda: "===============42==")
    monkeypatch.setattr(rendering, "format_datetime", lambda _: "Thu, 26 Nov 2026 17:47:08 +0000")
    renderer = Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example")
    for name in NAMES:
        for title in TITLES:
            for recipient, message_id in (("hanako@example.jp", "<m1@cobuy.example>"),
                                          (f"{'y' * 60}@example.jp", f"<{'f' * 32}@cobuy.example>")):
                args = (template, {"offer_id": "o1", **MAILS[template], "title": title}, recipient, name,
                        {"reservation_id": "r1", "cancel_token": "ab12", "lang": lang}, message_id)
                assert renderer.render_wire(*args) == renderer.render(*args).as_bytes(policy=WIRE), (name, title)


def test_the_holders_mail_with_its_attachment_still_goes_on_the_wire():
    renderer = Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example")
    wire = renderer.render_wire("concluded_holder", {"offer_id": "o1", **MAILS["concluded_holder"]}, "a@x.io", "Ann",
                                {"lang": "en"}, "<m@x>")
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert next(parsed.iter_attachments()).get_filename() == "purchasers.csv"


@pytest.mark.parametrize("template", sorted(set(MAILS) - {"concluded_holder"}))
def test_a_batch_rendered_once_gives_each_recipient_the_bytes_of_their_own_rendering(template, monkeypatch):
    monkeypatch.setattr(rendering, "_boundary", lambda: "===============42==")
    monkeypatch.setattr(rendering, "format_datetime", lambda _: "Thu, 26 Nov 2026 17:47:08 +0000")
    renderer = Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example")
    for lang in ("en", "ja"):
        for name in NAMES + ["<b>Eve & co</b>", "%(name)s", "Ann\u00a0Lee"]:
            args = (template, {"offer_id": "o1", **MAILS[template]}, f"r-{len(name)}@example.jp", name,
                    {"reservation_id": f"r{len(name)}", "cancel_token": "t", "lang": lang}, "<m1@cobuy.example>")
            assert renderer.render_wire(*args, batch="b1") == renderer.render_wire(*args), (lang, name)
    # rendered once for all of them: a fan-out per batch, a confirmation (links of each purchaser's
    # own) per context, which every reservation of the offer shares
    assert [value is not None for value in renderer._shared.values()] == [True, True]


@pytest.mark.parametrize("pending", [False, True])
def test_confirmations_of_one_offer_are_rendered_once_each_with_its_own_name_and_links(pending, monkeypatch):
    monkeypatch.setattr(rendering, "_boundary", lambda: "===============42==")
    monkeypatch.setattr(rendering, "format_datetime", lambda _: "Thu, 26 Nov 2026 17:47:08 +0000")
    renderer = Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example")
    renders = []
    real = renderer._parts
    monkeypatch.setattr(renderer, "_parts", lambda *args, **kw: renders.append(args) or real(*args, **kw))
    context = {"offer_id": "o1", **MAILS["reservation_accepted"]}
    for i, name in enumerate(NAMES * 3):
        extra = {"reservation_id": f"r-{i}", "cancel_token": f"c{i:040x}", "lang": ("en", "ja")[i % 2]}
        if pending:
            extra["verify_token"] = f"v{i:040x}"
        args = ("reservation_accepted", context, f"p{i}@example.jp", name, extra, f"<m{i}@cobuy.example>")
        mine = renderer.render_wire(*args, batch=f"batch-{i}")  # each confirmation is a batch of one
        assert mine == renderer.render_wire(*args), (i, name)
        text = email.message_from_bytes(mine, policy=email.policy.default).get_body(("plain",)).get_content()
        assert f"/reservations/r-{i}/cancel?token=c{i:040x}" in text and (f"verify?token=v{i:040x}" in text) == pending
    shared = len(renders) - len(NAMES) * 3  # the per-recipient renderings the comparison above made
    assert shared == 6, shared  # three stand-in renderings per language, then none per purchaser
    renderer.render_wire("reservation_accepted", {**context, "unit_price": 999}, "q@example.jp", "Q",
                         {"reservation_id": "q", "cancel_token": "q", "lang": "en"}, "<q@x>", batch="q")
    assert len(renders) - len(NAMES) * 3 == 9  # another condition is another rendering


def test_sixteen_senders_at_once_over_more_offers_than_are_kept_each_get_their_own_mail(monkeypatch):
    """The mailer's 16 sender threads share one renderer; 600 offer contexts overflow its 512 kept
    renderings, so it empties them while others read. Every mail must still be its own."""
    from concurrent.futures import ThreadPoolExecutor

    _fixed_wire(monkeypatch)
    shared, alone = (Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example") for _ in range(2))

    def send(i: int) -> None:
        extra = {"reservation_id": f"r{i}", "cancel_token": f"<&'{i:x}", "lang": ("en", "ja")[i % 2]}
        if i % 3 == 0:
            extra["verify_token"] = f"v{i}"
        args = ("reservation_accepted", {"offer_id": f"o{i % 600}", **MAILS["reservation_accepted"]},
                f"p{i}@example.jp", NAMES[i % len(NAMES)], extra, f"<m{i}@x>")
        assert shared.render_wire(*args, batch=f"b{i}") == alone.render_wire(*args), i

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, range(1200)))


def test_a_template_that_reads_more_of_the_recipient_than_the_name_is_rendered_per_recipient(tmp_path, monkeypatch):
    monkeypatch.setattr(rendering, "_boundary", lambda: "===============42==")
    monkeypatch.setattr(rendering, "format_datetime", lambda _: "Thu, 26 Nov 2026 17:47:08 +0000")
    plain_html = "<p>{{ recipient_name }}</p>"
    templates = {  # each reads the recipient otherwise than writing the name and links as they are
        "wrapped": ("{{ ('Dear ' ~ recipient_name ~ ', ' ~ 'words ' * 12) | wrap }}", plain_html),
        "tested": ("{% if recipient_name %}Hello {{ recipient_name }}{% endif %}", plain_html),
        "raw": ("Hello {{ recipient_name }}", "<p>{{ recipient_name | safe }}</p>"),
        "link_wrapped": ("{{ ('Cancel: ' ~ cancel_url ~ ' now') | wrap }}", plain_html),
        "link_tested": ("{{ cancel_url[-2:] }} {{ cancel_url | length }}", plain_html),
        "token": ("{{ cancel_url }} {{ reservation_id }}", plain_html),
    }
    for template, (text, html) in templates.items():
        (tmp_path / f"{template}.txt").write_text(f"Subject: Hi\n\n{text}\n")
        (tmp_path / f"{template}.html").write_text(html)
    renderer = Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example", tmp_path)
    for template in templates:
        for i, name in enumerate(("Mary Ann Long-Surname " * 4, "", "<i>x</i>")):
            extra = {"reservation_id": f"r{i}", "cancel_token": "t" * (i * 30 + 1)}
            args = (template, {"offer_id": "o1"}, "a@x.io", name, extra, "<m>")
            assert renderer.render_wire(*args, batch="b") == renderer.render_wire(*args), (template, name)
        assert all(value is None for key, value in renderer._shared.items() if key[0] == template), template


@pytest.mark.parametrize("body", ["", "a", "a\n", "\n\n\n", "a\r\nb", "a\rb\r", "y" * 200, "=" * 100 + "\n",
                                  "x " * 60 + "\n\nééé …\u2028 z\t\n", "trailing  \nq", "Ünal\u0085next\n"])
def test_bodies_encoded_line_by_line_are_what_the_email_package_encodes(body):
    import re

    from email import quoprimime

    whole = quoprimime.body_encode(body.encode("utf-8").decode("latin-1"))
    assert rendering._qp(body) == re.sub(r"\r\n|\r|\n", "\r\n", whole)


# -- red team: the confirmation rendered once per context ------------------------------------------

RID, TOKEN = "3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b", "Xy" * 21 + "_"  # a uuid, a token_urlsafe(32)-sized token


def _fixed_wire(monkeypatch):
    monkeypatch.setattr(rendering, "_boundary", lambda: "===============42==")
    monkeypatch.setattr(rendering, "format_datetime", lambda _: "Thu, 26 Nov 2026 17:47:08 +0000")


def _operator_template(tmp_path, monkeypatch, text: str, html: str = "<p>{{ recipient_name }}</p>") -> Renderer:
    """A renderer with an operator's template `op` (COBUY_MAIL_TEMPLATE_DIR), on fixed wire values."""
    _fixed_wire(monkeypatch)
    (tmp_path / "op.txt").write_text(text)
    (tmp_path / "op.html").write_text(html)
    return Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example", tmp_path)


def _as_if_alone(renderer: Renderer, batch: str, *args) -> None:
    """Rendered as part of a batch, a recipient's mail is byte for byte their own rendering."""
    assert renderer.render_wire(*args, batch=batch) == renderer.render_wire(*args), args


@pytest.mark.parametrize("text, html", [
    ("Subject: Hi\n\n{{ cancel_url }}\n", "<p>{{ cancel_url | urlize }}</p>"),
    ("Subject: Hi\n\nCancel: {{ cancel_url | replace('https://', '') }}\n", "<p>x</p>"),
    ("Subject: Hi\n\n{{ cancel_url | truncate(100) }}\n", "<p>x</p>"),
    ("Subject: Hi\n\n{{ cancel_url | wordwrap(100) }}\n", "<p>x</p>"),
    ("Subject: Hi\n\n{% if cancel_url.startswith('https://') %}Cancel: {% endif %}{{ cancel_url }}\n", "<p>x</p>"),
    ("Subject: Hi\n\n{% if cancel_url | length > 100 %}(long link){% endif %} {{ cancel_url }}\n", "<p>x</p>"),
    ("Subject: Hi\n\n{{ cancel_url.split('?')[0] }}\n", "<p>x</p>"),
], ids=["urlize", "replace", "truncate", "wordwrap", "startswith", "length-test", "split"])
def test_a_link_filter_that_leaves_the_stand_ins_alone_but_not_a_real_link_is_rendered_per_recipient(
        text, html, tmp_path, monkeypatch):
    renderer = _operator_template(tmp_path, monkeypatch, text, html)
    _as_if_alone(renderer, "b", "op", {"offer_id": "o1"}, "a@x.io", "Ann", {"reservation_id": RID, "cancel_token": TOKEN},
                 "<m>")


def test_a_pending_confirmation_after_an_active_one_of_the_same_offer_keeps_its_verify_code(tmp_path, monkeypatch):
    renderer = _operator_template(tmp_path, monkeypatch, "Subject: Hi\n\n{% if verify_token is defined %}"
                                  "Your code: {{ verify_token }}\n{% endif %}Cancel: {{ cancel_url }}\n")
    _as_if_alone(renderer, "b1", "op", {"offer_id": "o1"}, "a@x.io", "Ann", {"reservation_id": "r1", "cancel_token": "c1"},
                 "<m1>")
    _as_if_alone(renderer, "b2", "op", {"offer_id": "o1"}, "b@x.io", "Bob",
                 {"reservation_id": "r2", "cancel_token": "c2", "verify_token": "V2"}, "<m2>")


def test_contexts_that_differ_only_in_key_order_are_not_one_rendering(tmp_path, monkeypatch):
    renderer = _operator_template(tmp_path, monkeypatch, "Subject: Hi\n\n{% for k, v in specs.items() %}"
                                  "{{ k }}: {{ v }}\n{% endfor %}{{ cancel_url }}\n")
    for i, specs in enumerate(({"colour": "red", "size": "L"}, {"size": "L", "colour": "red"})):
        _as_if_alone(renderer, f"b{i}", "op", {"offer_id": "o1", "specs": specs}, "a@x.io", "Ann",
                     {"reservation_id": f"r{i}", "cancel_token": f"c{i}"}, "<m>")


def test_an_operator_template_edited_while_the_mailer_runs_is_used_for_the_next_confirmation(tmp_path, monkeypatch):
    import os

    renderer = _operator_template(tmp_path, monkeypatch, "Subject: Hi\n\nHello {{ recipient_name }}: {{ cancel_url }}\n")
    _as_if_alone(renderer, "b1", "op", {"offer_id": "o1"}, "a@x.io", "Ann", {"reservation_id": "r1", "cancel_token": "c1"},
                 "<m1>")
    (tmp_path / "op.txt").write_text("Subject: Hi\n\nHello {{ recipient_name }} <{{ recipient }}>: {{ cancel_url }}\n")
    os.utime(tmp_path / "op.txt", (1e9 + 10, 2e9))  # a later mtime: Jinja reloads the template
    later_by = time.monotonic() + 1.1  # the renderer looks at the files at most once a second
    monkeypatch.setattr(rendering.time, "monotonic", lambda: later_by)
    for later in (("op", {"offer_id": "o1"}, "b@x.io", "Bob", {"reservation_id": "r2", "cancel_token": "c2"}, "<m2>"),
                  ("op", {"offer_id": "o2"}, "c@x.io", "Cy", {"reservation_id": "r3", "cancel_token": "c3"}, "<m3>")):
        _as_if_alone(renderer, later[5], *later)


@pytest.mark.parametrize("filtered", ["lower", "capitalize", "striptags"])
def test_a_name_filter_that_leaves_the_name_stand_ins_alone_is_rendered_per_recipient(filtered, tmp_path, monkeypatch):
    renderer = _operator_template(tmp_path, monkeypatch,
                                  f"Subject: Hi\n\nHello {{{{ recipient_name | {filtered} }}}}: {{{{ cancel_url }}}}\n",
                                  f"<p>{{{{ recipient_name | {filtered} }}}}</p>")
    _as_if_alone(renderer, "b", "op", {"offer_id": "o1"}, "a@x.io", "ZOË <b>Ünal</b>",
                 {"reservation_id": "r1", "cancel_token": "c"}, "<m>")
