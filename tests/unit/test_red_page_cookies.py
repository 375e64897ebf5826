"""gateway/cache.page_cookies reads the page cookies as catalog (werkzeug) does, or refuses to share;
shared/csrf binds a seller's token to the session."""
from multidict import CIMultiDict

from gateway.cache import page_cookies
from shared import csrf


def test_page_cookies_agree_with_catalog_or_are_none():
    assert page_cookies(CIMultiDict()) == {}
    assert page_cookies(CIMultiDict(Cookie="cobuy_lang=ja; x=1"))["cobuy_lang"] == "ja"
    for header in ("cobuy_lang=ja; cobuy_lang=en", f"cobuy_csrf={'a' * 32}; cobuy_csrf={'b' * 32}",
                   "cobuy_seller=a; cobuy_seller=b"):
        assert page_cookies(CIMultiDict(Cookie=header)) is None, header
    assert page_cookies(CIMultiDict([("Cookie", "x=1"), ("Cookie", "cobuy_lang=ja")])) is None
    assert page_cookies(CIMultiDict([("Accept-Language", "en"), ("Accept-Language", "ja")])) is None
    assert page_cookies(CIMultiDict(Cookie="caf\udcc3\udca9=1")) is not None  # never raises
    assert page_cookies(CIMultiDict(Cookie="x=a b; cobuy_lang=ja"))["cobuy_lang"] == "ja"


def test_a_sellers_token_is_bound_to_the_session():
    key, secret = csrf.form_key("k"), csrf.new_secret()
    anonymous, bound = csrf.token_for(key, secret), csrf.token_for(key, secret, "session-a")
    assert csrf.valid(key, secret, anonymous) and csrf.valid(key, secret, bound, "session-a")
    assert not csrf.valid(key, secret, anonymous, "session-a")
    assert not csrf.valid(key, secret, bound, "session-b") and not csrf.valid(key, secret, bound)
