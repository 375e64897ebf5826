"""With COBUY_OPERATOR_PORT set, the gateway's operator endpoints (/metrics, /readyz, /healthz) answer
only on that port, which the Ingress does not route; the public port serves the API and 404s them."""
from __future__ import annotations

import pytest
import requests

from tests import infra
from tests.conftest import own_system
from tests.support import Cobuy

OPERATOR_PATHS = ["/metrics", "/readyz", "/healthz"]


@pytest.fixture(scope="module")
def split_system(servers, mailbox, output_dir, tmp_path_factory):
    with own_system(servers, mailbox, tmp_path_factory.mktemp("operator-port"), output_dir / "cobuy-up-operator.log",
                    [], COBUY_OPERATOR_PORT=str(infra.free_port())) as running:
        yield running


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_operator_endpoints_are_not_found_on_the_public_port(split_system, path):
    reply = requests.get(split_system.base_url + path, timeout=10)
    assert reply.status_code == 404 and reply.json()["code"] == "not_found"


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_operator_endpoints_answer_on_the_operator_port(split_system, path):
    reply = requests.get(split_system.operator_url + path, timeout=10)
    assert reply.status_code == 200
    if path == "/metrics":
        assert "cobuy_http_requests_total" in reply.text


def test_the_public_port_serves_the_api_and_the_operator_port_does_not(split_system):
    cobuy = Cobuy(split_system.base_url)
    offer = cobuy.create_offer(cobuy.register_seller())
    assert cobuy.reserve(offer["id"]).status_code == 201
    assert requests.get(f"{split_system.operator_url}/api/v1/offers/{offer['id']}", timeout=10).status_code == 404
