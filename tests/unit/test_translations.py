"""Every word a page or a mail shows is marked for translation and translated (SPEC §12).

Each page template and each mail is rendered in Japanese from data typed in Japanese; whatever
English is left in what a reader sees (text, labels, titles, the live script's words, subjects)
was never marked, or never translated. A new template fails here until it has a context below.
"""
from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po
from flask import Flask, g, get_template_attribute, render_template

from services.catalog import dashboard, pages, seller_forms, seller_pages
from services.catalog import languages as page_languages
from services.mailer.delivery import WIRE
from services.mailer.rendering import Renderer
from shared import clock
from shared.languages import format_instant

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = ["catalog", "mailer"]
# What may stay Latin in a Japanese page or mail: names, and what the reader types or copies.
ALLOWED = {"cobuy", "UTC", "English", "API", "ID", "Webhook", "CSV",  # the last four are Japanese too
           "usd", "eur", "jpy", "JPY"}  # currency codes, as a seller types them
NOW = clock.now()


# -- the catalogs ---------------------------------------------------------------------------------

def _catalog(service: str, lang: str):
    with open(ROOT / "services" / service / "translations" / lang / "LC_MESSAGES" / "messages.po", "rb") as po:
        return read_po(po, locale=lang)


def _extracted(service: str) -> set:
    folder = ROOT / "services" / service
    with open(ROOT / "babel.cfg") as cfg:
        from babel.messages.frontend import parse_mapping_cfg
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
    return {msgid for _, _, msgid, _, _ in extract_from_dir(folder, method_map, options_map, keywords=keywords)}


@pytest.mark.parametrize("service", TRANSLATED)
def test_every_marked_string_is_in_the_catalogs_and_translated_in_japanese(service):
    """`make translations` was run after marking new words, and each got its Japanese."""
    ja = _catalog(service, "ja")
    marked = {m if isinstance(m, str) else m[0] for m in _extracted(service)}
    in_po = {m.id if isinstance(m.id, str) else m.id[0] for m in ja if m.id}
    assert marked - in_po == set(), "marked but not extracted: run `make translations` and translate"
    untranslated = [m.id for m in ja if m.id and (m.fuzzy or not all(m.string if isinstance(m.string, tuple)
                                                                         else [m.string]))]
    assert untranslated == []


@pytest.mark.parametrize("service", TRANSLATED)
def test_each_japanese_translation_keeps_the_placeholders_of_its_english(service):
    ja = _catalog(service, "ja")
    problems = [(m.id, [str(e) for e in errors]) for m, errors in ja.check() if errors]
    assert problems == []
    for m in ja:
        if m.id:
            english = set(re.findall(r"%\(\w+\)s", m.id if isinstance(m.id, str) else m.id[-1]))
            for translated in (m.string if isinstance(m.string, tuple) else [m.string]):
                assert set(re.findall(r"%\(\w+\)s", translated)) == english, m.id


# -- what a reader sees ---------------------------------------------------------------------------

class _Seen(HTMLParser):
    """The text a reader sees or hears: text nodes, labels and titles, and the live script's words."""
    SPOKEN = {"aria-label", "title", "alt", "placeholder"}

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.skip: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.parts += [value for name, value in attrs.items() if name in self.SPOKEN and value]
        if tag in ("style", "pre", "code") or (tag == "script" and attrs.get("type") != "application/json"):
            self.skip.append(tag)
        elif tag == "script":
            self.skip.append("json")

    def handle_endtag(self, tag):
        if self.skip and (self.skip[-1] == tag or (self.skip[-1] == "json" and tag == "script")):
            self.skip.pop()

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)
        elif self.skip[-1] == "json":
            self.parts += _strings(json.loads(data))


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return [value] if isinstance(value, str) and len(value) > 2 else []


def english_left(text: str) -> list[str]:
    """Latin words in `text` beyond names, addresses, links and the API's own words."""
    text = re.sub(r"https?://\S+|\S+@\S+|purchasers\.csv|\{\w+\}|\b2xx\b", " ", text)
    return sorted({word for word in re.findall(r"[A-Za-z]{2,}", text) if word not in ALLOWED})


def seen_in_html(html: str) -> str:
    parser = _Seen()
    parser.feed(html)
    return " ".join(parser.parts)


# -- the pages ------------------------------------------------------------------------------------

ENTRY = {"seller_id": "s1", "seller_name": "山田商店", "unit_price": 39900, "minimum_reservations": 3, "at": NOW,
         "kind": "initial"}


def _offer(**changes) -> dict:
    history = [ENTRY, {**ENTRY, "seller_name": "鈴木自転車", "unit_price": 35000, "kind": "voluntary"},
               {**ENTRY, "seller_name": "佐藤サイクル", "unit_price": 30000, "kind": "invited"}]
    offer = {"id": "o1", "title": "電動自転車", "description": "折りたたみ式", "currency": "jpy", "status": "open",
             "outcome": None, "opens_at": NOW - timedelta(days=3), "invite_at": NOW + timedelta(hours=1),
             "closes_at": NOW + timedelta(days=2, hours=1), "invited": True, "min_decrement": 100,
             "condition": {**history[-1], "since": NOW}, "reservation_count": 1, "history": history}
    return {**offer, **changes}


def _page_contexts() -> dict[str, list[dict]]:
    """Each page template, in each state it can be in (with pages.py's own words in it)."""
    concluded = _offer(status="closed", outcome="concluded", reservation_count=4)
    failed = _offer(status="closed", outcome="failed")
    offer_page = dict(chart=pages.price_chart(_offer()), progress=50, form={"name": "花子"})
    refusals = [pages.refusal_in_words(409, {"code": "offer_closed"}, failed),
                pages.refusal_in_words(429, {}, _offer()),
                pages.refusal_in_words(422, {"errors": {"name": ["x"], "email": ["y"]}}, _offer()),
                pages.refusal_in_words(422, {}, _offer())]
    return {
        "home.html": [dict(open_offers=[_offer(), _offer(reservation_count=5, closes_at=NOW + timedelta(minutes=3))],
                           closed=[concluded, failed], page=2, pages=3, total_open=120, progress=pages.progress,
                           since=0),
                      dict(open_offers=[], closed=[], page=1, pages=1, total_open=0, progress=pages.progress, since=0)],
        "offer.html": [dict(offer_page, offer=_offer(), errors={}),
                       dict(offer_page, offer=concluded, errors={}),
                       dict(offer_page, offer=failed, errors={}),
                       *[dict(offer_page, offer=_offer(reservation_count=3), errors=e) for e in refusals]],
        "reserved.html": [dict(offer=_offer(), reservation={}, repeat=repeat,
                               cancel_url="/reservations/r1/cancel?token=a")
                          for repeat in (False, True)],
        "cancel.html": [dict(reservation_id="r1", token="ab", done=False, error=None, offer=_offer()),
                        dict(reservation_id="r1", token="ab", done=True, error=None, offer=_offer()),
                        *[dict(reservation_id="r1", token="ab", done=False, error=error, offer=None)
                          for error in (pages.BAD_LINK, pages.TRY_AGAIN, pages.CLOSED_TO_CANCELS)]],
        "verify.html": [dict(reservation_id="r1", token="ab", done=False, error=None, offer=None),
                        dict(reservation_id="r1", token="ab", done=True, error=None, offer=_offer()),
                        dict(reservation_id="r1", token="ab", done=True, error=None, offer=None),
                        *[dict(reservation_id="r1", token="ab", done=False, error=error, offer=_offer())
                          for error in (*pages.VERIFY_WORDS.values(), pages.BAD_VERIFY_LINK)]],
        "error.html": [],  # pages.py's handlers give its words: rendered below through them
    }


@pytest.fixture(scope="module")
def page_app():
    app = Flask(__name__)
    app.secret_key = "test"
    app.register_blueprint(pages.pages_bp)
    app.register_blueprint(seller_pages.seller_pages_bp)
    app.register_blueprint(dashboard.dashboard_bp)
    page_languages.install(app)
    app.jinja_env.globals["csrf_token"] = lambda: "token"
    return app


def _render_pages(app, lang: str) -> dict[str, str]:
    rendered = {}
    with app.test_request_context(f"/?lang={lang}&page=2"):
        app.preprocess_request()
        for template, contexts in _page_contexts().items():
            for i, context in enumerate(contexts):
                rendered[f"{template}#{i}"] = render_template(template, **context)
        rendered["error.html#csrf"] = pages.csrf_failed(None)[0]
        rendered["error.html#404"] = pages.page_not_found(None)[0]
    return rendered


def test_every_page_template_has_a_context_here(page_app):
    templates = (ROOT / "services/catalog/templates").glob("*.html")
    shipped = {p.name for p in templates if not p.name.startswith("_")} - {"base.html"}  # every page extends it
    with page_app.test_request_context("/"):
        assert shipped == set(_page_contexts())


# -- the seller's pages (seller_pages.py, dashboard.py, seller_forms.py and templates/sellers/) -----

SELLER = {"id": "s1", "name": "山田商店", "email": "yamada@example.jp"}
API_KEY = "12345678"  # what the seller copies: Latin in any language, so none here
HOLDING = {"condition": {**ENTRY, "seller_id": "s2", "seller_name": "鈴木自転車"}, "min_decrement": 100}


def _seller_contexts() -> dict[str, list[dict]]:
    """Each seller page in each state it can be in, with every word its Python gives it."""
    mine, theirs = _offer(condition={**ENTRY, "since": NOW}), _offer(id="o2")
    closed = [_offer(id="o3", status="closed", outcome="concluded", condition={**ENTRY, "since": NOW}),
              _offer(id="o4", status="closed", outcome="failed")]
    every_field = set(seller_forms.OFFER_FIELD_WORDS)
    offer_errors = [seller_forms.field_words(every_field, seller_forms.OFFER_FIELD_WORDS),
                    seller_forms.field_words({"unknown"}, seller_forms.OFFER_FIELD_WORDS),
                    seller_forms.field_words({"unknown"}, {})]
    refusals = [dashboard.refusal_words(code, {"condition": HOLDING["condition"], "price_to_beat": 29900}, "jpy")
                for code in ("already_holder", "offer_closed", "raises_minimum", "not_better", "other")]
    counter_errors = [seller_forms.field_words(set(seller_forms.COUNTER_FIELD_WORDS), seller_forms.COUNTER_FIELD_WORDS),
                      *({"form": [words]} for words in (*refusals, dashboard.TRY_AGAIN))]
    to_win = [{**HOLDING, "price_to_beat": beat, "minimum_to_beat": fewer} for beat in (29900, None) for fewer in (2, None)]
    preview = {"title": "電動自転車", "currency": "jpy", "closes_at": NOW + timedelta(days=2), "reservation_count": 0,
               "condition": {"seller_name": "山田商店", "unit_price": 39900, "minimum_reservations": 3}}
    registration = [*({f: [words]} for f, words in seller_pages.REGISTRATION_WORDS.items()),
                    {"email": [seller_pages.REGISTRATION_REFUSALS["email_taken"]]},
                    {"form": [seller_pages.REGISTRATION_REFUSALS["rate_limited"]]}]
    sign_in = dict(next="/dashboard", email="yamada@example.jp", error=None)
    return {
        "sellers/dashboard.html": [dict(seller=SELLER, since=0, progress=pages.progress, held=[mine], intercepted=[theirs],
                                        closed=closed, others=[theirs]),
                                   dict(seller=SELLER, since=0, progress=pages.progress, held=[], intercepted=[],
                                        closed=[], others=[])],
        "sellers/new_offer.html": [dict(form={"currency": "jpy"}, errors={}, preview=None),
                                   dict(form={"currency": "jpy"}, errors={}, preview=preview),
                                   *[dict(form={}, errors=errors, preview=None) for errors in offer_errors]],
        "sellers/counter_offer.html": [*[dict(offer=_offer(), holding=holding, form={}, errors={}, won=None)
                                         for holding in to_win],
                                       *[dict(offer=_offer(), holding=to_win[0], form={}, errors=errors, won=None)
                                         for errors in counter_errors],
                                       dict(offer=_offer(), holding=None, form={}, errors={}, won=ENTRY)],
        "sellers/purchasers.html": [dict(offer=_offer(), purchasers=[{"name": "佐藤花子", "email": "h@example.jp", "at": NOW}]),
                                    dict(offer=_offer(), purchasers=[])],
        "sellers/published.html": [dict(offer=_offer())],
        "sellers/key.html": [dict(api_key=API_KEY, seller=SELLER)],
        "sellers/register.html": [dict(form={}, errors=errors) for errors in ({}, *registration)],
        "sellers/registered.html": [dict(seller={**SELLER, "api_key": API_KEY})],
        "sellers/sign_in.html": [dict(sign_in),
                                 *[dict(sign_in, error=error) for error in (seller_pages.NOT_AN_ADDRESS,
                                                                            seller_pages.RATE_LIMITED)],
                                 *[dict(sign_in, refused={"title": title, "message": message})
                                   for title, message in seller_pages.LINK_WORDS.values()]],
        "sellers/link.html": [dict(token="ab12")],
        "sellers/link_sent.html": [dict(email="yamada@example.jp")],
    }


def _render_seller_pages(app, lang: str) -> dict[str, str]:
    """Signed in (the nav bar shows), and once signed out (sign_in.html's notice shows)."""
    rendered = {}
    with app.test_request_context(f"/?lang={lang}&signed_out=1"):
        app.preprocess_request()
        g.web_seller = SELLER
        for template, contexts in _seller_contexts().items():
            for i, context in enumerate(contexts):
                rendered[f"{template}#{i}"] = render_template(template, **context)
        for handler in (dashboard.forbidden, dashboard.not_found, dashboard.unavailable):
            rendered[f"error.html#{handler.__name__}"] = handler(None)[0]
    return rendered


def test_every_seller_page_template_has_a_context_here(page_app):
    templates = (ROOT / "services/catalog/templates/sellers").glob("*.html")
    shipped = {f"sellers/{p.name}" for p in templates if not p.name.startswith("_")}  # partials: in the pages
    with page_app.test_request_context("/"):
        assert shipped == set(_seller_contexts())


def test_every_seller_page_in_japanese_shows_no_english_left(page_app):
    left = {name: english_left(seen_in_html(html)) for name, html in _render_seller_pages(page_app, "ja").items()}
    assert {name: words for name, words in left.items() if words} == {}


def test_a_seller_page_in_english_still_speaks_english(page_app):
    """The marking changed no English word: the default language reads as before."""
    html = _render_seller_pages(page_app, "en")
    assert "Counter-offer on" in html["sellers/counter_offer.html#0"]
    assert "offer ¥29,900 or less at a minimum of 3 or fewer, or ¥39,900 with a minimum of 2 or fewer. " \
           "A tie keeps the holder." in html["sellers/counter_offer.html#0"]
    assert "1 active reservation · minimum 3" in html["sellers/purchasers.html#0"]
    assert "0 active reservations · minimum 3" in html["sellers/purchasers.html#1"]


def test_the_dashboard_in_japanese_gives_the_live_script_its_words_and_counts_the_japanese_way(page_app):
    html = _render_seller_pages(page_app, "ja")["sellers/dashboard.html#0"]
    assert '<html lang="ja">' in html and 'id="cobuy-words"' in html
    assert "山田商店 の募集" in html and "予約 <strong class=\"count\">1</strong>件" in html
    assert '<span class="badge concluded">成立</span>' in html


def test_every_page_in_japanese_shows_no_english_left(page_app):
    left = {name: english_left(seen_in_html(html)) for name, html in _render_pages(page_app, "ja").items()}
    assert {name: words for name, words in left.items() if words} == {}


def test_a_japanese_page_says_so_and_formats_money_dates_and_counts_the_japanese_way(page_app):
    html = _render_pages(page_app, "ja")["home.html#0"]
    assert '<html lang="ja">' in html and 'hreflang="en"' in html  # the switcher offers English
    assert "￥39,900" not in html and "￥30,000" in html  # the holding price, in yen, the Japanese way
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日 \d{1,2}:\d{2}:\d{2} UTC", html)
    assert "予約 <strong class=\"count\">5</strong>件" in html  # a counter, not a plural
    assert "残り 2日 1時間" in html or "残り 2日 0時間" in html


@pytest.mark.parametrize("lang, count, minimum, words", [
    ("en", 1, 3, "1 of 3 reservations needed"),
    ("en", 0, 1, "0 of 1 reservation needed"),
    ("en", 1, 1, "1 reservation · minimum of 1 reached"),
    ("en", 2, 1, "2 reservations · minimum of 1 reached"),
    ("ja", 1, 1, "予約 1件 · 最低数 1件に到達"),
    ("ja", 2, 3, "予約 2件 / 成立に必要な 3件"),
])
def test_the_tally_says_one_reservation_two_reservations_or_counts_them_in_japanese(page_app, lang, count, minimum,
                                                                                    words):
    with page_app.test_request_context(f"/?lang={lang}"):
        page_app.preprocess_request()
        tally = get_template_attribute("_offer_parts.html", "tally")
        assert re.sub(r"<[^>]+>", "", str(tally(count, minimum))) == words


# -- the mails ------------------------------------------------------------------------------------

CLOSES = (NOW + timedelta(days=1)).isoformat()
CONDITION = {"seller_id": "s2", "seller_name": "鈴木自転車", "unit_price": 30000, "minimum_reservations": 3}
BUYERS = [{"id": "r1", "name": "佐藤花子", "email": "hanako@example.jp"},
          {"id": "r2", "name": "田中", "email": "t@example.jp"}]
MAILS = {
    "reservation_accepted": {"title": "電動自転車", "currency": "jpy", "closes_at": CLOSES, "unit_price": 39900,
                             "minimum_reservations": 3, "holder_name": "山田商店"},
    "reservation_cancelled": {"title": "電動自転車", "currency": "jpy", "closes_at": CLOSES},
    "offer_intercepted": {"title": "電動自転車", "currency": "jpy", "closes_at": CLOSES, "min_decrement": 100,
                          "reservation_count": 2, "kind": "invited", "condition": CONDITION,
                          "previous": {"unit_price": 39900, "minimum_reservations": 3}},
    "invitation": {"title": "電動自転車", "currency": "jpy", "invite_at": CLOSES, "closes_at": CLOSES, "holder_id": "s1",
                   "holder_name": "山田商店", "unit_price": 39900, "minimum_reservations": 3, "min_decrement": 100,
                   "reservation_count": 2},
    "price_drop": {"title": "電動自転車", "currency": "jpy", "closes_at": CLOSES, "condition": CONDITION,
                   "was_price": 39900},
    "sign_in_link": {"token": "ab12", "expires_at": CLOSES},
    "webhook_disabled": {"endpoint_id": "w1", "url": "https://hooks.example.jp/cobuy", "failing_since": CLOSES,
                         "hours": 24},
    **{template: {"title": "電動自転車", "currency": "jpy", "outcome": "concluded", "final_count": 2, "closes_at": CLOSES,
                  "condition": {**CONDITION, "seller_email": "suzuki@example.jp"}, "purchasers": BUYERS}
       for template in ("contract_concluded", "contract_failed", "concluded_holder", "failed_holder")},
}


def render_mail(template: str, lang: str, **context) -> email.message.EmailMessage:
    renderer = Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example")
    extra = {"reservation_id": "r1", "cancel_token": "ab12", "lang": lang}
    message = renderer.render(template, {"offer_id": "o1", **MAILS[template], **context}, "hanako@example.jp",
                              "佐藤花子", extra, "<m1@cobuy.example>")
    return email.message_from_bytes(message.as_bytes(policy=WIRE), policy=email.policy.default)


def seen_in_mail(mail) -> str:
    text = mail.get_body(("plain",)).get_content()
    text = "\n".join(line for line in text.splitlines()
                     if not line.lstrip().startswith(("curl ", "-H ", "-d ", "GET ")))  # what the reader types
    return " ".join([str(mail["Subject"]), text, seen_in_html(mail.get_body(("html",)).get_content())])


def test_every_mail_template_has_a_context_here():
    shipped = {p.stem for p in (ROOT / "services/mailer/templates").glob("*.txt")}
    assert shipped == set(MAILS)


@pytest.mark.parametrize("template", sorted(MAILS))
def test_every_mail_in_japanese_shows_no_english_left(template):
    assert english_left(seen_in_mail(render_mail(template, "ja"))) == []


def test_a_japanese_mail_writes_money_dates_and_counts_the_japanese_way():
    mail = render_mail("invitation", "ja")
    text = mail.get_body(("plain",)).get_content()
    assert str(mail["Subject"]) == "招待: 電動自転車 で ￥39,900 を下回る条件を"
    assert "3件の予約" in text and re.search(r"\d{4}年\d{1,2}月\d{1,2}日 \d{1,2}:\d{2}:\d{2} UTC", text)
    assert '<html lang="ja">' in mail.get_body(("html",)).get_content()


@pytest.mark.parametrize("lang, hour, written", [
    ("ja", 0, "2026年11月27日 0:02:16 UTC"),  # CLDR's Japanese hour is not padded: the CI run at 23:02 met it
    ("ja", 14, "2026年11月27日 14:02:16 UTC"),
    ("en", 0, "November 27, 2026, 12:02:16\u202fAM UTC"),  # CLDR puts a narrow no-break space before AM
])
def test_an_instant_is_written_the_languages_way_at_any_hour(lang, hour, written):
    assert format_instant(datetime(2026, 11, 27, hour, 2, 16, tzinfo=timezone.utc), lang) == written


@pytest.mark.parametrize("minimum, words", [(1, "1 reservation is needed"), (2, "2 reservations are needed")])
def test_an_english_mail_says_one_reservation_or_two_reservations(minimum, words):
    text = render_mail("reservation_accepted", "en", minimum_reservations=minimum).get_body(("plain",)).get_content()
    assert words in text


def test_a_mail_without_a_known_language_speaks_english():
    for lang in ("", "xx", None):
        assert str(render_mail("reservation_cancelled", lang)["Subject"]).startswith("Cancelled:")
