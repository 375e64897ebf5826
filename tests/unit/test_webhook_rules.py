"""The webhook rules by table: which targets may be called (SSRF), back-off, giving up, the count's pace."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from services.mailer.webhooks import network, rules
from services.mailer.webhooks.api import new_secret
from services.mailer.webhooks.rules import Refused

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("address, refused", [
    ("93.184.216.34", None),
    ("2606:2800:220:1:248:1893:25c8:1946", None),
    ("127.0.0.1", "a loopback address"),
    ("127.8.9.10", "a loopback address"),
    ("::1", "a loopback address"),
    ("10.0.0.1", "a private address"),
    ("172.16.5.4", "a private address"),
    ("192.168.1.1", "a private address"),
    ("fd00:ec2::254", "a private address"),  # the IPv6 metadata service (a unique-local address)
    ("169.254.169.254", "the metadata service"),
    ("::ffff:169.254.169.254", "the metadata service"),
    ("::ffff:127.0.0.1", "a loopback address"),
    ("169.254.1.2", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("fe80::1%eth0", "a link-local address"),
    ("0.0.0.0", "an unspecified address"),
    ("::", "an unspecified address"),
    ("224.0.0.1", "a multicast address"),
    ("100.64.0.1", "not a public address"),  # carrier-grade NAT, shared address space
])
def test_only_public_addresses_may_be_called(address, refused):
    assert rules.refused_address(address) == refused


@pytest.mark.parametrize("address, refused", [
    ("2002:7f00:1::", "a loopback address"),          # 6to4 wrapping 127.0.0.1
    ("2002:a9fe:a9fe::1", "the metadata service"),     # 6to4 wrapping 169.254.169.254
    ("2002:0a00:0001::", "a private address"),         # 6to4 wrapping 10.0.0.1
    ("2002:5db8:d822::1", None),                       # 6to4 wrapping a public 93.184.216.34
    ("fec0::1", "a site-local address"),               # deprecated site-local, still routed inside some sites
    ("64:ff9b::a9fe:a9fe", "a reserved address"),      # NAT64 to the metadata service
])
def test_an_address_wrapping_a_forbidden_one_or_site_local_may_not_be_called(address, refused):
    assert rules.refused_address(address) == refused


# Every spelling of loopback a hostile seller might try resolves, here, before the check: no DNS needed.
@pytest.mark.parametrize("url", [
    "http://2130706433/", "http://0x7f.1/", "http://0177.0.0.1/", "http://127.1/", "http://0x7f000001/",
    "http://017700000001/", "http://0/", "http://localhost./", "http://LOCALHOST/", "https://\u24dbocalhost/",
    "http://[::ffff:127.0.0.1]/", "http://[0:0:0:0:0:ffff:7f00:1]/", "http://[::1]/", "http://[fc00::1]/",
    "http://[fe80::1]/", "http://[2002:7f00:1::]/", "http://[fec0::1]/", "https://good@127.0.0.1/",
    "http://127.0.0.1:80@evil.example/", "http://evil.example\\@127.0.0.1/",
])
def test_no_spelling_of_a_local_address_passes_the_check(url):
    with pytest.raises(Refused) as refused:
        network.checked(url, allow_http=True, allow_private=False)
    assert refused.value.code in ("webhook_url_forbidden", "webhook_url_invalid", "webhook_url_unresolvable")


@pytest.mark.parametrize("url, allow_http, expected", [
    ("https://hooks.example.com/cobuy?x=1", False, rules.Target("https", "hooks.example.com", 443, "/cobuy?x=1")),
    ("HTTPS://Hooks.Example.com:8443", False, rules.Target("https", "hooks.example.com", 8443, "/")),
    ("http://hooks.example.com/h", True, rules.Target("http", "hooks.example.com", 80, "/h")),
    ("https://[2001:db8::1]/h", False, rules.Target("https", "2001:db8::1", 443, "/h")),
    ("https://hooks.example.com/caf\u00e9?q=\u00fc&r=%41", False,
     rules.Target("https", "hooks.example.com", 443, "/caf%C3%A9?q=%C3%BC&r=%41")),  # the request line is ASCII
    ("http://hooks.example.com/h", False, "webhook_url_scheme"),
    ("ftp://hooks.example.com/h", True, "webhook_url_scheme"),
    ("file:///etc/passwd", True, "webhook_url_scheme"),
    ("gopher://127.0.0.1:25/", True, "webhook_url_scheme"),
    ("https://hooks.example.com:25/", False, "webhook_url_port"),
    ("https://hooks.example.com:0/", False, "webhook_url_port"),
    ("https://hooks.example.com:99999/", False, "webhook_url_invalid"),
    ("https://user:pw@hooks.example.com/", False, "webhook_url_invalid"),
    ("https://hooks.example.com/#frag", False, "webhook_url_invalid"),
    ("https:///nohost", False, "webhook_url_invalid"),
    ("https://hooks.example.com/a b", False, "webhook_url_invalid"),
    ("https://hooks.example.com/\r\nX: y", False, "webhook_url_invalid"),
    ("https://" + "a" * 2000 + ".com/", False, "webhook_url_invalid"),
])
def test_a_webhook_url_is_https_with_an_ordinary_port_and_nothing_hidden(url, allow_http, expected):
    if isinstance(expected, str):
        with pytest.raises(Refused) as refused:
            rules.parse_target(url, allow_http)
        assert refused.value.code == expected
    else:
        assert rules.parse_target(url, allow_http) == expected


@pytest.mark.parametrize("failures, low, high", [(1, 2.5, 5), (2, 5, 10), (3, 10, 20), (20, 1800, 3600)])
def test_backoff_doubles_with_jitter_and_stops_at_an_hour(failures, low, high):
    delays = [rules.backoff(failures, 5.0, random.Random(seed)).total_seconds() for seed in range(50)]
    assert all(low <= d <= high for d in delays)
    assert len(set(delays)) > 1, "jittered"


@pytest.mark.parametrize("age, gives_up", [(timedelta(hours=23, minutes=59), False), (timedelta(hours=24), True)])
def test_a_delivery_is_retried_for_24_hours(age, gives_up):
    assert rules.gives_up(T0, T0 + age, timedelta(hours=24)) is gives_up


@pytest.mark.parametrize("failing_since, disabled", [(None, False), (T0 - timedelta(hours=23), False),
                                                     (T0 - timedelta(hours=24), True)])
def test_an_endpoint_failing_for_24_hours_is_disabled(failing_since, disabled):
    assert rules.endpoint_disabled(failing_since, T0, timedelta(hours=24)) is disabled


@pytest.mark.parametrize("last_told, allowed", [(None, True), (T0 - timedelta(seconds=59), False),
                                                (T0 - timedelta(seconds=60), True)])
def test_a_count_is_told_at_most_once_a_minute(last_told, allowed):
    assert rules.count_may_be_told(last_told, T0) is allowed


@pytest.mark.parametrize("status, ok", [(200, True), (204, True), (299, True), (301, False), (302, False),
                                        (404, False), (500, False), (None, False)])
def test_only_a_2xx_is_a_delivery(status, ok):
    assert rules.succeeded(status) is ok


def test_a_secret_is_whsec_and_base64_of_24_to_64_random_bytes():
    import base64

    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_") and 24 <= len(base64.b64decode(secret[6:])) <= 64


def test_a_delivery_to_a_path_with_non_ascii_characters_is_an_answer_not_an_exception():
    """network.post never raises: an exception there left the message 'sending', retried at each lease
    for ever, with no attempt in the log and no end."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    got = []

    def serve():
        connection, _ = listener.accept()
        got.append(connection.recv(65536))
        connection.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        connection.close()

    threading.Thread(target=serve, daemon=True).start()
    with listener:
        answer = network.post(f"http://127.0.0.1:{listener.getsockname()[1]}/caf\u00e9", b"{}", {}, 5.0,
                              allow_http=True, allow_private=True)
    assert answer.status == 204 and got[0].startswith(b"POST /caf%C3%A9 HTTP/1.1")
