"""The first hour (issue 15): what a newcomer, a seller with curl and an operator meet first."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import requests

from tests import infra
from tests.support import ROOT, instant, unique_email, wait_for


# -- a seller with curl --------------------------------------------------------------------------

def test_publishing_an_offer_answers_201_with_where_it_lives(cobuy):
    seller = cobuy.register_seller()
    reply = cobuy.post("/api/v1/offers", headers=cobuy.auth(seller), json={
        "title": "Lamp", "currency": "usd", "unit_price": 1000, "minimum_reservations": 2,
        "closes_at": instant(3600)})
    assert reply.status_code == 201
    assert reply.headers["Location"] == f"/api/v1/offers/{reply.json()['id']}"
    assert cobuy.get(reply.headers["Location"]).json()["title"] == "Lamp"


def test_registering_answers_201_with_where_the_seller_reads_itself(cobuy):
    reply = cobuy.post("/api/v1/sellers", json={"name": "Loc", "email": unique_email()})
    assert reply.status_code == 201 and reply.headers["Location"] == "/api/v1/sellers/me"


def test_a_json_body_sent_without_its_content_type_is_a_415_that_names_the_header(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    for path in ("/api/v1/sellers", f"/api/v1/offers/{offer['id']}/reservations"):
        reply = cobuy.post(path, data='{"name": "Ann", "email": "ann@example.com"}',
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert reply.status_code == 415, reply.text
        assert reply.json()["code"] == "unsupported_media_type" and "Content-Type: application/json" in reply.text


def test_a_body_of_the_wrong_shape_is_named_body_not_after_a_library(cobuy):
    reply = cobuy.post("/api/v1/sellers", json=[{"name": "Ann"}])
    assert reply.status_code == 422 and set(reply.json()["errors"]) == {"body"}
    assert "_schema" not in reply.text


def test_a_405_names_the_methods_allowed(cobuy):
    reply = cobuy.delete("/api/v1/offers")
    assert reply.status_code == 405
    assert {m.strip() for m in reply.headers["Allow"].split(",")} >= {"GET", "POST"}


def test_a_cancel_without_its_token_says_the_token_is_missing(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    r = cobuy.reserve(offer["id"]).json()
    reply = cobuy.delete(f"/api/v1/reservations/{r['id']}")
    assert reply.status_code == 403 and reply.json()["code"] == "cancel_token_missing"
    assert "X-Cancel-Token" in reply.json()["detail"]


def test_a_204_carries_no_content_type(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    r = cobuy.reserve(offer["id"]).json()
    reply = cobuy.delete(f"/api/v1/reservations/{r['id']}", headers={"X-Cancel-Token": r["cancel_token"]})
    assert reply.status_code == 204 and "Content-Type" not in reply.headers and reply.content == b""


def test_problems_made_by_the_gateway_have_the_shape_of_the_services(cobuy):
    service_made = cobuy.get("/api/v1/offers/no-such-offer")
    gateway_made = [cobuy.get("/api/v1/nowhere"), cobuy.get("/api/v1/sellers/me", headers={"Authorization": "Bearer x"}),
                    cobuy.post("/api/v1/sellers", data=b"x" * (70 * 1024), headers={"Content-Type": "application/json"})]
    assert [r.status_code for r in gateway_made] == [404, 401, 413]
    for reply in [service_made] + gateway_made:
        assert reply.headers["Content-Type"] == "application/problem+json", reply.headers
        assert re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", reply.headers["X-Correlation-Id"])
        assert reply.headers.get("Server") == "cobuy"
        assert {"type", "title", "status", "code"} <= reply.json().keys()


def test_a_cancel_form_with_a_token_that_cannot_travel_is_refused_on_the_page(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    r = cobuy.reserve(offer["id"]).json()
    page = cobuy.get(f"/reservations/{r['id']}/cancel", params={"token": r["cancel_token"]})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    for token in ("€uro", "x" * 5000, "a\r\nb"):
        reply = cobuy.post(f"/reservations/{r['id']}/cancel", data={"token": token, "csrf_token": csrf},
                           headers={"Referer": cobuy.url(f"/reservations/{r['id']}/cancel")})
        assert reply.status_code == 403, (token[:10], reply.status_code)
        assert "not valid" in reply.text
    assert cobuy.offer(offer["id"])["reservation_count"] in (0, 1)  # nothing was cancelled by the junk
    reply = cobuy.delete(f"/api/v1/reservations/{r['id']}", headers={"X-Cancel-Token": r["cancel_token"]})
    assert reply.status_code == 204


# -- a newcomer ------------------------------------------------------------------------------------

def test_the_readme_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    fence = lines.index("```sh")
    commands = lines[fence + 1:lines.index("```", fence + 1)]
    assert [c.split("#")[0].strip() for c in commands] == ["make run", "make test"]


def test_make_run_installs_no_test_tool():
    """`make run` installs `pip install -e .`: every third-party import of the running code must
    come from the runtime dependencies (or theirs), none from the dev extra."""
    import ast
    from importlib import metadata

    def requirement_names(requirements) -> set[str]:
        names = set()
        for requirement in requirements or []:
            if "extra ==" in requirement:
                continue
            names.add(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-"))
        return names

    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime, todo = set(), list(requirement_names(declared))
    while todo:
        name = todo.pop()
        if name in runtime:
            continue
        runtime.add(name)
        try:
            todo += requirement_names(metadata.requires(name))
        except metadata.PackageNotFoundError:
            pass
    providers = metadata.packages_distributions()
    ours = {"shared", "services", "gateway", "cobuy"}
    missing = set()
    for folder in ours:
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
                for module in modules:
                    top = module.split(".")[0]
                    if top in ours or top in sys.stdlib_module_names or top not in providers:
                        continue
                    if not {d.lower().replace("_", "-") for d in providers[top]} & runtime:
                        missing.add(f"{path.relative_to(ROOT)}: {module}")
    assert not missing, f"imported by running code but not a runtime dependency: {sorted(missing)}"


def test_cobuy_up_prints_one_table_of_its_processes_and_where_to_go(tmp_path):
    port = infra.free_port_block()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBUY_")}
    env.update({"COBUY_HTTP_PORT": str(port), "COBUY_DATA_DIR": str(tmp_path / "data")})
    process = subprocess.Popen([sys.executable, "-m", "cobuy.cli", "up"], env=env, cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("stop   Ctrl-C" in line for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
        assert (tmp_path / "data" / "mail").is_dir()
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=40)
    output = "\n".join(lines)
    assert lines and lines[0].startswith("cobuy is up on SQLite files"), output
    assert f"gateway" in output and f"http://127.0.0.1:{port}" in output
    for service, offset in (("catalog", 1), ("reservation", 2), ("auction", 3), ("mailer", 4)):
        assert re.search(rf"^  {service}-web-1 +http://127\.0\.0\.1:{port + offset} +pid \d+$", output, re.M), output
        assert re.search(rf"^  {service}-worker-1 +events in and out +pid \d+$", output, re.M), output
    assert f"open   http://127.0.0.1:{port}/" in output
    assert f"mails  {tmp_path / 'data' / 'mail'}" in output
    everything = output + rest
    assert "Listening at" not in everything and "Error while closing socket" not in everything, everything
    assert process.returncode == 0


def test_a_seller_who_just_won_an_offer_lists_its_reservations_at_once(cobuy):
    """SPEC §2's read-your-writes, for the holder's own list right after the winning 201."""
    first, rival = cobuy.register_seller(), cobuy.register_seller()
    for _ in range(20):
        offer = cobuy.create_offer(first, unit_price=1000, minimum_reservations=2)
        cobuy.reserve(offer["id"], name="Early Bird")
        assert cobuy.counter(rival, offer["id"], 900, 2).status_code == 201
        listed = cobuy.get(f"/api/v1/offers/{offer['id']}/reservations", headers=cobuy.auth(rival))
        assert listed.status_code == 200, listed.text
        assert [i["name"] for i in listed.json()["items"]] == ["Early Bird"]
        assert cobuy.get(f"/api/v1/offers/{offer['id']}/reservations",
                         headers=cobuy.auth(first)).status_code == 403


def test_a_used_or_wrong_cancel_link_says_so_and_the_page_names_the_offer(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller(), title="Link Lamp")
    r = cobuy.reserve(offer["id"]).json()
    link = f"/reservations/{r['id']}/cancel"
    asked = cobuy.get(link, params={"token": r["cancel_token"]})
    assert asked.status_code == 200 and "Do you want to cancel" in asked.text and "Link Lamp" in asked.text
    wrong = cobuy.get(link, params={"token": "ab" * 20})
    assert wrong.status_code == 403 and "not valid" in wrong.text and "Do you want to cancel" not in wrong.text
    assert cobuy.delete(f"/api/v1/reservations/{r['id']}", headers={"X-Cancel-Token": r["cancel_token"]}).status_code == 204
    used = cobuy.get(link, params={"token": r["cancel_token"]})
    assert "already cancelled" in used.text and "Do you want to cancel" not in used.text
    assert f'href="/offers/{offer["id"]}"' in used.text
