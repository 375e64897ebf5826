"""A rollback, as `kubectl rollout undo` does one: the schema is migrated to head by this code (the
release's Job), then the previous release's code — the newest earlier commit whose migrations are
all in this one, fewer — is started the way its containers start (`cobuy serve`, COBUY_MIGRATIONS=job)
against that schema. It finds the schema ahead of it, starts, and serves a reservation end to end
(expand/contract: docs/operations.md). Its own `cobuy migrate` refuses the newer schema, as the
runbook warns. The previous code comes from git (`git archive`), so the test needs the history."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
import requests

from shared.config import SERVICES
from tests import infra
from tests.support import Cobuy, unique_email, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True,
                          timeout=60).stdout


def _migrations_at(commit: str) -> frozenset[str]:
    return frozenset(path for path in _git("ls-tree", "-r", "--name-only", commit, "--", "services").split()
                     if "/migrations/versions/" in path and path.endswith(".py"))


def previous_release() -> str | None:
    """The newest commit behind HEAD's schema whose pods check the schema instead of migrating it."""
    head = _migrations_at("HEAD")
    for commit in _git("rev-list", "HEAD").split():
        if not _migrations_at(commit) < head:
            continue
        try:
            checks = "def require_current" in _git("show", f"{commit}:shared/migrations.py")
        except subprocess.CalledProcessError:
            checks = False
        if checks:
            return commit
    return None


@pytest.fixture
def previous_code(tmp_path):
    try:
        commit = previous_release() if (ROOT / ".git").exists() else None
    except subprocess.CalledProcessError:
        commit = None
    if commit is None:
        if infra.IN_CI:
            pytest.fail("no earlier commit with COBUY_MIGRATIONS=job and an older schema: is the history there?")
        pytest.skip("no git history to take the previous release from")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True,
                             timeout=120).stdout
    folder = tmp_path / f"previous-{commit[:10]}"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    _compile_catalogs(folder)
    print(f"previous release: {commit}")
    return folder


def _compile_catalogs(folder: Path) -> None:
    """A release is built with its pages' and mails' catalogs compiled (the Dockerfile's `pybabel
    compile`, `make install`); git keeps only the .po files."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in folder.glob("services/*/translations/*/LC_MESSAGES/messages.po"):
        with po.open("rb") as source:
            catalog = read_po(source)
        with po.with_suffix(".mo").open("wb") as target:
            write_mo(target, catalog)


@pytest.fixture
def fresh_servers(servers):
    database_url, amqp_url, prefix = servers
    if database_url is None or amqp_url is None:
        pytest.skip("containers need PostgreSQL and RabbitMQ")
    with infra.postgres_database() as url:
        yield url, amqp_url, f"{prefix}-{uuid.uuid4().hex[:4]}"


def test_the_previous_release_starts_on_the_migrated_schema_and_serves_a_reservation(
        previous_code, fresh_servers, mailbox, tmp_path):
    database_url, amqp_url, prefix = fresh_servers
    base = infra.free_port_block()
    ports = {"gateway": base, **{name: infra.free_port() for name in SERVICES}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBUY_")}
    env.update({"COBUY_DATABASE_URL": database_url, "COBUY_AMQP_URL": amqp_url, "COBUY_EXCHANGE_PREFIX": prefix,
                "COBUY_HTTP_PORT": str(base), "COBUY_DATA_DIR": str(tmp_path / "data"),
                "COBUY_INTERNAL_SECRET": uuid.uuid4().hex * 2, "COBUY_RATE_LIMIT": "off",
                "COBUY_SMTP_URL": f"smtp://127.0.0.1:{mailbox.sink.port}", "COBUY_LOG_LEVEL": "WARNING",
                "COBUY_MIGRATIONS": "job", "WEB_CONCURRENCY": "1",
                **{f"COBUY_{name.upper()}_URL": f"http://127.0.0.1:{ports[name]}" for name in SERVICES}})

    migrated = subprocess.run([sys.executable, "-m", "cobuy.cli", "migrate"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stderr  # this release's Job

    old = {**env, "PYTHONPATH": str(previous_code)}
    refused = subprocess.run([sys.executable, "-m", "cobuy.cli", "migrate"], cwd=previous_code, env=old,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "Can't locate revision" in refused.stderr, refused.stderr

    # The processes below import what this environment resolves: prove it is the previous release's
    # code and not this checkout's (an editable install could take precedence over the folder).
    probe = ("import cobuy.cli, shared.migrations, services.reservation.api as r; "
             "print(cobuy.cli.__file__, shared.migrations.__file__, r.__file__)")
    where = subprocess.run([sys.executable, "-c", probe], cwd=previous_code, env=old,
                           capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    assert all(Path(path).is_relative_to(previous_code) for path in where.stdout.split()), where.stdout

    logs = tmp_path / "logs"
    logs.mkdir()
    processes, outputs = [], []
    try:
        for component in ("gateway", *SERVICES):
            for role in (("web",) if component == "gateway" else ("web", "worker")):
                argv = [sys.executable, "-m", "cobuy.cli", "serve", component, "--role", role, "--workers", "1",
                        "--bind", f"127.0.0.1:{ports[component]}"]
                metrics = tmp_path / f"metrics-{component}-{role}"
                metrics.mkdir()
                outputs.append(open(logs / f"{component}-{role}.log", "wb"))
                processes.append(subprocess.Popen(
                    argv, cwd=previous_code, env={**old, "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
                    stdout=outputs[-1], stderr=subprocess.STDOUT, start_new_session=True))
        gateway = f"http://127.0.0.1:{base}"

        def ready():
            exited = [p.args[4:6] for p in processes if p.poll() is not None]
            assert not exited, f"exited: {exited}; logs in {logs}"
            try:
                return requests.get(f"{gateway}/readyz?services=all", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, 180, interval=0.5, what="the previous release to start on the newer schema")
        cobuy = Cobuy(gateway)
        seller = cobuy.register_seller()
        offer = cobuy.create_offer(seller)
        buyer = unique_email("rollback")
        reply = cobuy.reserve(offer["id"], email=buyer)
        assert reply.status_code == 201, reply.text
        cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 1, timeout=30,
                         what="the reservation in the offer's count (catalog's worker on the new schema)")
        assert mailbox.wait(1, to=buyer, timeout=30)
        assert all(p.poll() is None for p in processes), f"a process of the previous release stopped; logs in {logs}"
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for output in outputs:
            output.close()
