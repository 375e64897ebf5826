"""`make bench`: the production shape on this machine's PostgreSQL and RabbitMQ, driven by wrk.

Prints one table and writes bench/results.json. `--check` exits non-zero when a target is
missed. Seeding shortcuts (10,000 sellers or reservations written straight into the owning
service's tables) are marked in the table: they set the scene, the measured step is real.
"""
from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests
from sqlalchemy import create_engine, make_url, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.config import SERVICE_PORT_OFFSET  # noqa: E402
from shared.smtpsink import SmtpSink, parse_subject  # noqa: E402

PG = os.environ.get("COBUY_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP = os.environ.get("COBUY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
TARGETS = {
    "B1": "≥ 1,000 /s, p99 ≤ 150 ms, 0 errors, count exact",
    "B1r": "≥ 0.5",
    "B2": "p99 ≤ 250 ms",
    "B3": "≥ 2,000 /s each, p99 ≤ 50 ms",
    "B3r": "≥ 0.5 (offer page / bare template app)",
    "B4": "≤ 15 s",
    "B4d": "≤ 15 s",
    "B5": "≤ 15 s",
    "B6": "p99 ≤ 1 s",
    "B7": "no worse than linear",
    "B8": "p99 ≤ 1 s to every client, B1 ≥ 80 % of alone just before",
}


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(seconds: float) -> str:
    return (now() + timedelta(seconds=seconds)).isoformat()


class Mail:
    """What the sink received. The scenarios poll `matching` five times a second while a fan-out
    runs, in the process whose CPU is the sink's: each subject's matches are kept and only the
    arrivals since its last call are read (a full scan of every mail of the run, tens of thousands
    by B4, under the lock the sink's thread appends with, cost the sink a tenth of its time)."""

    def __init__(self):
        self.arrivals: list[tuple[float, str, str]] = []  # (time, recipient, subject)
        self.lock = threading.Lock()
        self._found: dict[str, tuple[int, list[tuple[float, str, str]]]] = {}  # subject: (arrivals read, matches)

    def __call__(self, message, recipients):
        with self.lock:
            self.arrivals.append((time.time(), recipients[0], message["Subject"]))

    def matching(self, subject: str) -> list[tuple[float, str, str]]:
        with self.lock:
            read, found = self._found.get(subject, (0, []))
            found += [a for a in self.arrivals[read:] if subject in a[2]]
            self._found[subject] = (len(self.arrivals), found)
            return list(found)


def wrk(url: str, connections: int, seconds: int, script: str, *args: str) -> dict:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(ROOT / "bench" / script), url]
    if args:
        command += ["--", *args]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    result = json.loads(re.search(r"WRK_JSON (\{.*\})", out).group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("non2xx", "connect_errors", "read_errors", "write_errors", "timeouts"))
    return result


class Bench:
    def __init__(self, args):
        self.args = args
        self.tag = uuid.uuid4().hex[:8]
        self.db_name = f"cobuy_bench_{self.tag}"
        self.vhost = f"cobuy-bench-{self.tag}"
        admin = PG.replace("postgresql://", "postgresql+psycopg://")
        self.admin = create_engine(admin, isolation_level="AUTOCOMMIT")
        self.db_url = make_url(PG).set(database=self.db_name).render_as_string(hide_password=False)
        scheme, rest = AMQP.split("://", 1)
        self.amqp = f"{scheme}://{rest.split('/', 1)[0]}/{self.vhost}"
        self.mail = Mail()
        self.sink = SmtpSink("127.0.0.1", 0 or 28025 + os.getpid() % 1000, on_message=self.mail, parse=parse_subject)
        self.port = 29000 + (os.getpid() % 90) * 10
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()
        self.results: dict[str, dict] = {}
        self.process = None

    # -- setting up ------------------------------------------------------------------------------

    def start(self):
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", self.vhost], check=True, capture_output=True)
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"],
                       check=True, capture_output=True)
        self.sink.start()
        self.data = Path(f"/tmp/cobuy-bench-{self.tag}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("COBUY_")}
        env.update({"COBUY_HTTP_PORT": str(self.port), "COBUY_DATA_DIR": str(self.data),
                    "COBUY_DATABASE_URL": self.db_url, "COBUY_AMQP_URL": self.amqp,
                    "COBUY_SMTP_URL": f"smtp://127.0.0.1:{self.sink.port}", "COBUY_RATE_LIMIT": "off",
                    "COBUY_LOG_LEVEL": "WARNING", "COBUY_MAIL_CONCURRENCY": str(self.args.mail_concurrency)})
        # a setting to try on the stack: BENCH_COBUY_COUNT_INTERVAL_SECONDS=0.05 sets COBUY_COUNT_INTERVAL_SECONDS
        env.update({k[len("BENCH_"):]: v for k, v in os.environ.items() if k.startswith("BENCH_COBUY_")})
        self.env = env
        self.log = open(ROOT / "bench" / "cobuy-up.log", "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "cobuy.cli", "up", "--scale", self.args.scale,
                                         "--web-workers", str(self.args.web_workers),
                                         "--gateway-workers", str(self.args.gateway_workers)],
                                        cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if self.http.get(self.base + "/readyz?services=all", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise SystemExit("cobuy did not become ready; see bench/cobuy-up.log")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.sink.stop()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], capture_output=True)
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))

    def db(self):
        return create_engine(self.db_url.replace("postgresql://", "postgresql+psycopg://"))

    def seller(self, name="Bench Seller") -> dict:
        r = self.http.post(self.base + "/api/v1/sellers", json={"name": name, "email": f"s-{uuid.uuid4().hex}@bench.example"})
        r.raise_for_status()
        return r.json()

    def offer(self, seller, **overrides) -> dict:
        body = {"title": f"Bench {uuid.uuid4().hex[:6]}", "currency": "usd", "unit_price": 10000,
                "minimum_reservations": 1, "closes_at": iso(3600)}
        body.update(overrides)
        r = self.http.post(self.base + "/api/v1/offers", json=body, headers={"Authorization": f"Bearer {seller['api_key']}"})
        r.raise_for_status()
        return r.json()

    def count(self, offer_id) -> int:
        return self.http.get(f"{self.base}/api/v1/offers/{offer_id}").json()["reservation_count"]

    def _by_component(self, read) -> dict[str, float]:
        """Sum read(pid) over cobuy's processes, per component (catalog-web, mailer-worker…)."""
        from tests.processes import descendants

        totals: dict[str, float] = {}
        for pid in descendants(self.process.pid):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                value = read(pid)
            except (OSError, AttributeError):
                continue
            m = re.search(r"services\.(\w+)\.(app|worker)|gateway\.app|smtpsink", cmd)
            if not m:
                continue
            name = "gateway" if "gateway.app" in cmd else "smtp-sink" if "smtpsink" in cmd else f"{m.group(1)}-{'web' if m.group(2) == 'app' else 'worker'}"
            totals[name] = round(totals.get(name, 0) + value, 1)
        return totals

    def rss_by_component(self) -> dict[str, float]:
        return self._by_component(
            lambda pid: int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024)

    def cpu_by_component(self) -> dict[str, float]:
        """CPU seconds (user + system) each component has used so far, and the servers beside it."""
        tick = os.sysconf("SC_CLK_TCK")

        def cpu(pid, reaped: bool = False) -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return sum(int(f) for f in fields[11:15 if reaped else 13]) / tick

        totals = self._by_component(cpu)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                server = {"postgres": "postgresql", "beam.smp": "rabbitmq", "wrk": "wrk"}.get(name)
                if int(pid) == os.getpid():
                    server = "bench (smtp sink)"
                if server:
                    # PostgreSQL's backends come and go (a pool closes its overflow connections as a
                    # rush ends): the postmaster's reaped children's CPU keeps theirs in the sum
                    totals[server] = round(totals.get(server, 0) + cpu(pid, reaped=server == "postgresql"), 1)
            except OSError:
                continue
        return totals

    @staticmethod
    def tree_cpu(root: int) -> float:
        """CPU seconds (user + system) a process and its descendants have used so far."""
        from tests.processes import descendants

        tick, total = os.sysconf("SC_CLK_TCK"), 0.0
        for pid in {root, *descendants(root)}:
            try:
                total += sum(int(f) for f in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]) / tick
            except OSError:
                continue
        return total

    @staticmethod
    def cpu_used(before: dict, after: dict) -> dict[str, float]:
        return {k: round(after[k] - before.get(k, 0), 1) for k in sorted(after, key=lambda k: -after[k] + before.get(k, 0))}

    def quiesce(self, limit: float = 180.0) -> None:
        """Let earlier scenarios' mail drain (B1's confirmations, B6's invitations), so the next
        fan-out is measured on its own and not behind another one's queue."""
        engine = self.db()
        deadline = time.time() + limit
        try:
            while time.time() < deadline:
                with engine.connect() as c:
                    left = c.execute(text("SELECT count(*) FROM mailer.deliveries "
                                          "WHERE state IN ('pending', 'claimed', 'sending')")).scalar()
                if not left:
                    return
                time.sleep(0.5)
        finally:
            engine.dispose()

    def mail_cpu(self, before: dict, mails: int) -> dict:
        """What a fan-out cost: CPU seconds of the mailer, the sink and PostgreSQL since `before`, and
        the mailer's milliseconds per mail (the figure to compare on a machine others share)."""
        used = self.cpu_used(before, self.cpu_by_component())
        cpu = {k: used.get(k, 0.0) for k in ("mailer-worker", "bench (smtp sink)", "postgresql")}
        return {"cpu_s": cpu, "mailer_ms_per_mail": round(1000 * cpu["mailer-worker"] / max(mails, 1), 2)}

    # -- the scenarios ---------------------------------------------------------------------------

    def b1_b2(self):
        seller = self.seller()
        offer = self.offer(seller, minimum_reservations=100000)
        path = f"/api/v1/offers/{offer['id']}/reservations"
        freshness: list[float] = []
        gets: list[float] = []  # the probe's count requests
        samples: list[dict] = []  # each B2 sample's instants, for probe_breakdown
        stop = threading.Event()
        engine = self.db()
        rss: dict = {}

        def committed() -> int:
            with engine.connect() as c:
                return c.execute(text("SELECT count(*) FROM reservation.reservations WHERE offer_id=:o"),
                                 {"o": offer["id"]}).scalar()

        def sampler():
            freshness.extend(count_freshness(self.base + path, f"{self.tag}@bench.example", committed,
                                             lambda: self.count(offer["id"]), stop, gets, samples))

        # the offer's GET through the public door and straight to catalog's port, in turn: what the
        # gateway's hop adds to B2's reads under B1's load (the probe's own GETs go through the door)
        catalog = f"http://127.0.0.1:{self.port + SERVICE_PORT_OFFSET['catalog']}"
        paired = {"gateway": [], "catalog": []}

        def pairs():
            doors = {"gateway": (requests.Session(), self.base), "catalog": (requests.Session(), catalog)}
            while not stop.is_set():
                for name, (session, base) in doors.items():
                    started = time.time()
                    try:
                        if session.get(f"{base}/api/v1/offers/{offer['id']}", timeout=10).ok:
                            paired[name].append((time.time() - started) * 1000)
                    except requests.RequestException:
                        pass  # counted nowhere: B1's own figures say whether the stack failed
                    stop.wait(0.1)

        def memory():
            time.sleep(self.args.b1_seconds / 2)
            rss.update(self.rss_by_component())

        threads = [threading.Thread(target=sampler), threading.Thread(target=memory), threading.Thread(target=pairs)]
        for t in threads:
            t.start()
        cpu_before, machine_before, steal_before = self.cpu_by_component(), machine_busy(), steal_seconds()
        result = wrk(self.base, 64, self.args.b1_seconds, "reserve.lua", path, f"b1{self.tag}")
        wrk_done = time.time()
        stop.set()
        for t in threads:
            t.join()
        time.sleep(3)
        cpu, machine_after = self.cpu_used(cpu_before, self.cpu_by_component()), machine_busy()
        with engine.connect() as c:
            in_db = c.execute(text("SELECT count(*) FROM reservation.reservations WHERE offer_id=:o AND status='active'"),
                              {"o": offer["id"]}).scalar()
            # the counts that crossed the broker for that (each one a transaction in catalog, auction,
            # mailer), and B2's stages from them: a count event's wait for the relay (recorded → sent,
            # that is confirmed by the broker) and for catalog (recorded → applied), and the spacing of
            # counts (coalescing: a reservation waits for the next count that covers it)
            rows = c.execute(text(
                "SELECT o.created_at, o.sent_at, i.processed_at, o.body FROM reservation.outbox o "
                "LEFT JOIN (SELECT event_id, min(processed_at) AS processed_at FROM catalog.inbox GROUP BY event_id) i "
                "ON i.event_id = o.event_id "  # one row per count event, whatever catalog's consumers
                "WHERE o.type = 'ReservationCountChanged' AND o.body LIKE :o ORDER BY o.created_at"),
                {"o": f'%{offer["id"]}%'}).all()
            counts = [(made, sent, applied, json.loads(body)["data"]["count"]) for made, sent, applied, body in rows]
        shown = self.count(offer["id"])
        probes = len(freshness)
        result.update({"count_in_db": in_db, "count_shown": shown, "probe_reservations": probes,
                       "count_events": len(counts),
                       "count_exact": shown == in_db and in_db >= result["requests"] - result["errors"]})
        self.results["B1"] = {"value": round(result["rps"]), "p99_ms": round(result["p99_ms"], 1), **result,
                              "ok": result["rps"] >= 1000 and result["p99_ms"] <= 150 and result["errors"] == 0
                              and result["count_exact"]}
        self.results["B1"]["rss_mb"] = rss
        self.results["B1"]["cpu_s"] = cpu
        # the whole machine's busy time (wrk, the probe and the kernel included) per reservation accepted:
        # what bench/floor.py's rows are in, so the two compare directly
        self.results["B1"]["machine_ms_per_reservation"] = round(
            (machine_after[0] - machine_before[0]) * 1000 / max(1, in_db), 3)
        # the same until every confirmation is sent: the mailer is niced, so part of its work (and the
        # sink's) falls after the window; bench/chain_floor.py's "until the last mail" is this figure
        self.results["B1"]["steal_s"] = round(steal_seconds() - steal_before, 1)
        self.quiesce()
        drained_at = time.time()
        self.results["B1"]["machine_ms_until_last_mail"] = round(
            (machine_busy()[0] - machine_before[0]) * 1000 / max(1, in_db), 3)
        # the same as the sum of cobuy's processes, PostgreSQL, RabbitMQ and the sink, by component
        until_last = self.cpu_used(cpu_before, self.cpu_by_component())
        self.results["B1"]["ms_until_last_mail"] = {k: round(v * 1000 / max(1, in_db), 3) for k, v in until_last.items()}
        self.results["B1"]["cpu_ms_until_last_mail"] = round(
            sum(v for k, v in until_last.items() if k != "wrk") * 1000 / max(1, in_db), 3)
        self.results["B1"]["steal_s_until_last_mail"] = round(steal_seconds() - steal_before, 1)
        self.results["B1"]["mail_drained_s_after_wrk"] = round(drained_at - wrk_done, 1)
        b2 = freshness_figures(freshness, gets)
        self.results["B2"] = {**b2, "stages_ms": count_stages(counts), "ok": b2["value"] is not None and b2["value"] <= 250,
                              "breakdown_ms": probe_breakdown(samples, counts),
                              "paired_get_ms": {name: request_percentiles(ms) for name, ms in paired.items()}}
        engine.dispose()

    def b1r(self):
        port = self.port + 9
        bare = start_bare_app(self.db_url, self.args.web_workers, port)
        try:
            time.sleep(3)
            result = wrk(f"http://127.0.0.1:{port}", 64, self.args.b1r_seconds, "reserve.lua", "/reserve/bare", "bare")
        finally:
            bare.terminate()
            bare.wait()
        ratio = self.results["B1"]["value"] / result["rps"]
        self.results["B1r"] = {"value": round(ratio, 2), "bare_rps": round(result["rps"]), "ok": ratio >= 0.5}

    def b3_b7_pages(self):
        self.quiesce()  # B1's confirmations are sent first: the pages are measured on their own
        seller = self.seller()
        offers = []
        growth = {}
        for target in (100, 1000):
            while len(offers) < target:
                offers.append(self.offer(seller))
            cpu_before = self.cpu_by_component()
            home = wrk(self.base + "/", 32, self.args.page_seconds, "get.lua")
            home["cpu_ms_per_request"] = self.cpu_per_request(cpu_before, home)
            growth[target] = home["p50_ms"]
        cpu_before = self.cpu_by_component()
        page = wrk(f"{self.base}/offers/{offers[0]['id']}", 32, self.args.page_seconds, "get.lua")
        page["cpu_ms_per_request"] = self.cpu_per_request(cpu_before, page)
        bare = self.b3r(offers[0]["id"])
        ratio = page["rps"] / bare["rps"]
        self.results["B3"] = {"value": f"{round(home['rps'])} / {round(page['rps'])}",
                              "home": {**{k: round(home[k], 1) for k in ("rps", "p50_ms", "p99_ms", "errors")},
                                       "cpu_ms_per_request": home["cpu_ms_per_request"]},
                              "offer_page": {**{k: round(page[k], 1) for k in ("rps", "p50_ms", "p99_ms", "errors")},
                                             "cpu_ms_per_request": page["cpu_ms_per_request"]},
                              "ok": min(home["rps"], page["rps"]) >= 2000 and max(home["p99_ms"], page["p99_ms"]) <= 50}
        self.results["B3r"] = {"value": round(ratio, 2), "bare_rps": round(bare["rps"]),
                               "bare_p99_ms": round(bare["p99_ms"], 1),
                               "bare_cpu_ms_per_request": bare["cpu_ms_per_request"], "ok": ratio >= 0.5}
        self.results.setdefault("B7", {})["home_p50_ms_by_open_offers"] = growth

    def cpu_per_request(self, cpu_before: dict, result: dict) -> dict[str, float]:
        """The gateway's and catalog's CPU ms per request of a wrk run: what the noise of a shared
        machine leaves comparable between runs (wrk has exited by now: its own CPU is not read)."""
        cpu = self.cpu_used(cpu_before, self.cpu_by_component())
        return {k: round(cpu.get(k, 0) * 1000 / max(result["requests"], 1), 3) for k in ("gateway", "catalog-web")}

    def b3r(self, offer_id: str) -> dict:
        """B3r's reference, as B1r's: a bare Flask app rendering the offer page's template
        (bench/bare_page_app.py), same workers, same connections, straight after the offer page."""
        port = self.port + 8
        env = {**self.env, "BARE_OFFER_ID": offer_id}
        bare = subprocess.Popen([sys.executable, "-m", "gunicorn", "--no-control-socket", "-w", str(self.args.web_workers),
                                 "-k", "gthread", "--threads", "4", "-b", f"127.0.0.1:{port}", "bench.bare_page_app:app"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/bare/offer", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    time.sleep(0.3)
            cpu_before = self.tree_cpu(bare.pid)
            result = wrk(f"http://127.0.0.1:{port}/bare/offer", 32, self.args.page_seconds, "get.lua")
            result["cpu_ms_per_request"] = round((self.tree_cpu(bare.pid) - cpu_before) * 1000
                                                 / max(result["requests"], 1), 3)
            return result
        finally:
            bare.terminate()
            bare.wait()

    def b4(self):
        self.quiesce()
        holder = self.seller("Invitation Holder")
        engine = self.db()
        registered = now()
        rows = [{"id": str(uuid.uuid4()), "name": f"Seeded {i}", "email": f"inv-{i}-{self.tag}@bench.example"}
                for i in range(self.args.sellers)]
        with engine.begin() as c:  # seeding: as if these sellers had registered
            c.execute(text("INSERT INTO catalog.sellers (id, name, email, api_key_hash, registered_at) "
                           "VALUES (:id, :name, :email, :hash, :at)"),
                      [{**r, "at": registered, "hash": hashlib.sha256(r["id"].encode()).hexdigest()} for r in rows])
            c.execute(text("INSERT INTO mailer.sellers (id, name, email, registered_at) VALUES (:id, :name, :email, :at)"),
                      [{**r, "at": registered} for r in rows])
        engine.dispose()
        title = f"B4 {self.tag}"
        cpu_before = self.cpu_by_component()
        offer = self.offer(holder, title=title, invite_at=iso(4), closes_at=iso(3600))
        due = datetime.fromisoformat(offer["invite_at"]).timestamp()
        expected = self.args.sellers  # + the other bench sellers
        deadline = time.time() + 180
        while time.time() < deadline and len(self.mail.matching(title)) < expected:
            time.sleep(0.2)
        arrivals = self.mail.matching(title)
        last = max(a[0] for a in arrivals) if arrivals else float("nan")
        self.results["B4"] = {"value": round(last - due, 1), "mails": len(arrivals), "seeded_sellers": expected,
                              "mails_per_s": round(len(arrivals) / max(last - due, 0.001)),
                              **self.mail_cpu(cpu_before, len(arrivals)),
                              "ok": len(arrivals) >= expected and last - due <= 15}

    def b4d(self):
        """SPEC §10: a counter-offer takes an offer with 10,000 active reservations; each purchaser
        gets one price-drop mail. Measured from the window's due instant (the interception + the
        production delay, 30 s) to the last price-drop mail at the sink. Seeded: the reservations,
        written into reservation's table and the mailer's list of purchasers as their events would."""
        self.quiesce()
        holder, rival = self.seller("Price-drop Holder"), self.seller("Price-drop Rival")
        title = f"B4d {self.tag}"
        offer = self.offer(holder, title=title, unit_price=10000, minimum_reservations=1, closes_at=iso(3600))
        # one real reservation first, so reservation has heard of the offer
        self.http.post(f"{self.base}/api/v1/offers/{offer['id']}/reservations",
                       json={"name": "Real Purchaser", "email": f"real-{self.tag}@bench.example"}).raise_for_status()
        seeded = self.args.sellers - 1
        at = now()
        rows = [{"id": str(uuid.uuid4()), "offer_id": offer["id"], "name": f"Purchaser {i}",
                 "email": f"pd-{i}-{self.tag}@bench.example", "at": at} for i in range(seeded)]
        engine = self.db()
        with engine.begin() as c:  # seeding: as if these purchasers had reserved (and the mailer heard it)
            c.execute(text("INSERT INTO reservation.reservations (id, offer_id, name, email, email_key, status, "
                           "revision, created_at) VALUES (:id, :offer_id, :name, :email, :email, 'active', 1, :at)"),
                      rows)
            c.execute(text("INSERT INTO mailer.purchasers (reservation_id, offer_id, email, name, active, revision) "
                           "VALUES (:id, :offer_id, :email, :name, true, 1)"), rows)
        expected = seeded + 1
        deadline = time.time() + 30
        while time.time() < deadline:  # the real purchaser's acceptance has reached the mailer
            with engine.connect() as c:
                if c.execute(text("SELECT count(*) FROM mailer.purchasers WHERE offer_id = :o AND active"),
                             {"o": offer["id"]}).scalar() >= expected:
                    break
            time.sleep(0.2)
        cpu_before = self.cpu_by_component()
        r = self.http.post(f"{self.base}/api/v1/offers/{offer['id']}/counter-offers",
                           json={"unit_price": 9000, "minimum_reservations": 1},
                           headers={"Authorization": f"Bearer {rival['api_key']}"})
        r.raise_for_status()
        due = None
        deadline = time.time() + 240
        while time.time() < deadline and len(self.mail.matching(f"Price drop: {title}")) < expected:
            if due is None:
                with engine.connect() as c:
                    due = c.execute(text("SELECT due_at FROM mailer.price_drops WHERE offer_id = :o"),
                                    {"o": offer["id"]}).scalar()
            time.sleep(0.2)
        engine.dispose()
        arrivals = self.mail.matching(f"Price drop: {title}")
        recipients = {a[1] for a in arrivals}
        last = max(a[0] for a in arrivals) if arrivals else float("nan")
        value = round(last - due.timestamp(), 1) if due is not None else float("nan")
        self.results["B4d"] = {"value": value, "mails": len(arrivals), "distinct_recipients": len(recipients),
                               "purchasers": expected, "mails_per_s": round(len(arrivals) / max(value, 0.001)),
                               **self.mail_cpu(cpu_before, len(arrivals)),
                               "ok": len(arrivals) == len(recipients) == expected and value <= 15}

    def b5(self, reservations: int, key: str = "B5"):
        self.quiesce()
        holder = self.seller("Close Holder")
        title = f"{key}-{reservations} {self.tag}"
        offer = self.offer(holder, title=title, invite_at=iso(3), closes_at=iso(12))
        engine = self.db()
        with engine.begin() as c:  # seeding: as if these purchasers had reserved
            c.execute(text("INSERT INTO reservation.reservations (id, offer_id, name, email, email_key, status, created_at) "
                           "VALUES (:id, :o, :n, :e, :e, 'active', now())"),
                      [{"id": str(uuid.uuid4()), "o": offer["id"], "n": f"P{i}", "e": f"p{i}-{key}-{self.tag}@bench.example"}
                       for i in range(reservations)])
        engine.dispose()
        cpu_before = self.cpu_by_component()
        due = datetime.fromisoformat(offer["closes_at"]).timestamp()
        deadline = due + 180
        while time.time() < deadline and len(self.mail.matching(f"Concluded: {title}")) < reservations:
            time.sleep(0.2)
        while time.time() < deadline and not self.mail.matching(f"purchasers for {title}"):
            time.sleep(0.2)
        arrivals = self.mail.matching(title)
        last = max(a[0] for a in arrivals) if arrivals else float("nan")
        return {"value": round(last - due, 1), "mails": len(arrivals), "seeded_reservations": reservations,
                **self.mail_cpu(cpu_before, len(arrivals)),
                "ok": len(arrivals) >= reservations + 1 and last - due <= 15}

    def b6(self):
        seller = self.seller()
        offers = [self.offer(seller, invite_at=iso(20 + 0.05 * i), closes_at=iso(30 + 0.05 * i))
                  for i in range(self.args.due_offers)]
        last_due = max(datetime.fromisoformat(o["closes_at"]).timestamp() for o in offers)
        time.sleep(max(last_due - time.time() + 3, 0))
        engine = self.db()
        with engine.connect() as c:
            rows = c.execute(text("SELECT extract(epoch FROM done_at - due_at) FROM auction.steps "
                                  "WHERE offer_id = ANY(:ids) AND done_at IS NOT NULL"),
                             {"ids": [o["id"] for o in offers]}).scalars().all()
        engine.dispose()
        late = sorted(float(v) for v in rows)
        p99 = late[min(len(late) - 1, int(0.99 * len(late)))]
        self.results["B6"] = {"value": round(p99, 3), "steps": len(late), "p50_s": round(statistics.median(late), 3),
                              "max_s": round(late[-1], 3), "ok": p99 <= 1 and len(late) == 2 * len(offers)}


def machine_busy() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine so far, wall time): what everyone's processes used,
    the other engineers' test runs included. Not the hypervisor's steal: time this machine's CPUs
    were ready to run and another guest ran instead is no one's work here (on 2026-11-27 it was
    7 s of an idle stack's 30 s on one machine, and figures before that day counted it as busy)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]  # user nice system irq softirq
    return busy / os.sysconf("SC_CLK_TCK"), time.time()


def steal_seconds() -> float:
    """The hypervisor's steal so far (/proc/stat), for a run to say how much of its time it lost."""
    return int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[8]) / os.sysconf("SC_CLK_TCK")


def start_bare_app(database_url: str, workers: int, port: int) -> subprocess.Popen:
    """B1r's reference (bench/bare_app.py): Flask under gunicorn with the reservation service's
    workers and threads, its table made on `database_url` if missing. bench/floor.py runs it too."""
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as c:
        c.execute(text("CREATE TABLE IF NOT EXISTS bare_reservations (id text primary key, offer_id text, email text, "
                       "UNIQUE (offer_id, email))"))
    engine.dispose()
    return subprocess.Popen([sys.executable, "-m", "gunicorn", "--no-control-socket", "-w", str(workers), "-k", "gthread",
                             "--threads", "4", "-b", f"127.0.0.1:{port}", "bench.bare_app:app"],
                            cwd=ROOT, env={**os.environ, "BARE_DATABASE_URL": database_url},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def count_freshness(reserve_url: str, address: str, committed, shown, stop: threading.Event,
                    gets: list[float] | None = None, probes: list[dict] | None = None) -> list[float]:
    """B2's probe, run beside B1's load until `stop`: reserve once (POST `reserve_url`, one new
    purchaser each time), and from its 201 poll `shown()` (the count a visitor gets, through the public
    door) every 5 ms until it reaches `committed()` (the offer's reservations in the database, read
    once right after the 201); then rest 0.2 s. Returns the seconds from each 201 to that count;
    `gets`, when given, receives how long each `shown()` took; `probes`, each sample's 201 instant
    (`at`), the count it waited for (`target`), whether it saw it before `stop` (`reached`), its
    seconds (`taken`) and how long the last `shown()` took (`last_get`)."""
    session, taken, i = requests.Session(), [], 0
    if gets is not None:
        count = shown

        def shown():
            started = time.time()
            try:
                return count()
            finally:
                gets.append(time.time() - started)

    while not stop.is_set():
        i += 1
        r = session.post(reserve_url, json={"name": "Probe", "email": f"probe-{i}-{address}"})
        t0 = time.time()
        if r.status_code != 201:
            continue
        target, asked, reached = committed(), t0, False
        while not stop.is_set():
            asked = time.time()
            if shown() >= target:
                reached = True
                break
            time.sleep(0.005)
        done = time.time()  # one reading for both: the last GET lies within the sample
        taken.append(done - t0)
        if probes is not None:
            probes.append({"at": t0, "target": target, "reached": reached, "taken": taken[-1],
                           "last_get": done - asked})
        time.sleep(0.2)
    return taken


def freshness_figures(taken: list[float], gets: list[float] | None = None) -> dict:
    """B2's figures from count_freshness's samples, ms: the p99 (`value`; with 100 samples or fewer,
    the slowest one), the median, how many; with `gets`, the count requests' own p50 / p90 / p99."""
    fresh = sorted(taken)
    p99 = fresh[min(len(fresh) - 1, int(0.99 * len(fresh)))] * 1000 if fresh else None
    figures = {"value": round(p99, 1) if p99 else None, "samples": len(fresh),
               "p50_ms": round(statistics.median(fresh) * 1000, 1) if fresh else None}
    if gets:
        figures["count_get_ms"] = request_percentiles([g * 1000 for g in gets])
    return figures


def count_stages(rows) -> dict:
    """(recorded, sent, applied by catalog, count) of each count event, in order → p50/p99 of each stage, ms."""
    def spread(values: list[float]) -> dict:
        values = sorted(v * 1000 for v in values)
        return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99), "n": len(values)}

    return {
        "recorded_to_sent": spread([(sent - made).total_seconds() for made, sent, *_ in rows if sent]),
        # the relay marks a batch sent once the broker has confirmed it, by when catalog has mostly applied it
        "recorded_to_applied": spread([(applied - made).total_seconds() for made, _, applied, _ in rows if applied]),
        "between_counts": spread([(b[0] - a[0]).total_seconds() for a, b in zip(rows, rows[1:])]),
    }


def probe_breakdown(probes: list[dict], rows) -> dict:
    """Where B2's slowest probes spent their time, ms: for each probe, the wait from its 201 until
    the count that covers it was recorded (`to_next_count`: coalescing, the relay's follow-up), that
    event's recorded → applied by catalog (the relay's round, the broker, catalog's consumer), and
    the GET that showed the count (through the gateway); medians over all probes and over the
    slowest tenth. `rows` are the count events' (recorded, sent, applied, count), in the order
    recorded; a probe's count is the first recorded after its 201 that reaches the count it waited
    for (one recorded just after the 201 may have been counted before the probe's `target` was read,
    and fall short of it)."""
    recorded = [row[0].timestamp() for row in rows]
    split = []
    for probe in sorted((p for p in probes if p["reached"]), key=lambda p: p["taken"]):
        i = bisect.bisect_left(recorded, probe["at"])
        while i < len(rows) and rows[i][3] < probe["target"]:
            i += 1
        if i == len(rows) or rows[i][2] is None:
            continue  # no such count in the window, or catalog's applying it not recorded: nothing to split
        split.append({"taken": probe["taken"] * 1000, "to_next_count": (recorded[i] - probe["at"]) * 1000,
                      "count_applied": (rows[i][2].timestamp() - recorded[i]) * 1000,
                      "last_get": probe["last_get"] * 1000})

    def medians(of: list[dict]) -> dict:
        return {key: round(statistics.median(p[key] for p in of), 1) for key in of[0]} if of else {}

    return {"probes": len(split), "all": medians(split), "slowest_tenth": medians(split[-max(1, len(split) // 10):])}


def request_percentiles(ms: list[float]) -> dict:
    """p50 / p90 / p99 of some requests' durations, as B2 reports its GETs."""
    ms = sorted(ms)
    return {f"p{round(q * 100)}": percentile(ms, q) for q in (0.5, 0.9, 0.99)}


def percentile(values: list[float], q: float) -> float | None:
    return round(values[int(q * (len(values) - 1))], 3) if values else None


def freshness(seen: list, committed: list[float], samples: int = 200) -> list[float]:
    """From a reservation's commit to the instant each client shows a count that includes it (its
    first event with a count at least as high): what a viewer experiences, coalescing included. The
    delays above count only the counts that were sent, so they leave out the wait for the next
    poll; this does not. Sampled over `samples` counts spread across the run, for every client."""
    if not committed:
        return []
    picks = sorted({int(i * (len(committed) - 1) / max(1, samples - 1)) + 1 for i in range(samples)})
    delays = []
    for events in seen:
        counts = [count for count, _t in events]
        for count in picks:
            at = bisect.bisect_left(counts, count)
            if at < len(events):
                delays.append(events[at][1] - committed[count - 1])
    return sorted(delays)


def b8(bench: "Bench") -> None:
    """5,000 clients follow one hot offer's stream while B1's load reserves on it: how long each
    count change takes to reach them (from the reservation's commit), what the gateway spends, and
    what the streams cost B1. The delay splits in two: commit -> the first client (catalog's read
    model and the gateway's poll) and first client -> each other client (the fan-out, gateway
    writes and client reads); the crowd reports its own CPU and event-loop lag, so a saturated
    client is not mistaken for a slow gateway."""
    args = bench.args
    offer = bench.offer(bench.seller(), minimum_reservations=100000)
    # B1 alone again just before the crowd: the run's first B1 meets a cold system
    # (fresh processes and caches), so against it alone the ratio swung from 0.68 to 1.18 run to run
    warm = bench.offer(bench.seller(), minimum_reservations=100000)  # its own: B8's counts start at 0
    adjacent = wrk(bench.base, 64, args.b1_seconds, "reserve.lua", f"/api/v1/offers/{warm['id']}/reservations",
                   f"b8a{bench.tag}")
    crowd = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "sse_clients.py"), "--port", str(bench.port), "--clients",
         str(args.sse_clients), "--procs", str(args.sse_procs), "--path", f"/api/v1/offers/{offer['id']}/stream",
         "--seconds", str(args.b1_seconds + 10)], stdout=subprocess.PIPE, text=True)
    opened = json.loads(crowd.stdout.readline())  # B1 starts once the crowd is in place
    rss: dict = {}
    sampler = threading.Timer(args.b1_seconds / 2, lambda: rss.update(bench.rss_by_component()))
    sampler.start()
    cpu_before, machine_before = bench.cpu_by_component(), machine_busy()
    load = wrk(bench.base, 64, args.b1_seconds, "reserve.lua", f"/api/v1/offers/{offer['id']}/reservations",
               f"b8{bench.tag}")
    cpu, machine_after = bench.cpu_used(cpu_before, bench.cpu_by_component()), machine_busy()
    sampler.join()
    seen = json.loads(crowd.communicate(timeout=120)[0])
    seen.update(opened)
    engine = bench.db()
    with engine.connect() as c:
        committed = [r[0].timestamp() for r in c.execute(text(
            "SELECT created_at FROM reservation.reservations WHERE offer_id=:o ORDER BY created_at"),
            {"o": offer["id"]})]
    engine.dispose()
    final = len(committed)
    receipts = [(count, t) for events in seen["seen"] for count, t in events if 0 < count <= final]
    delays = sorted(t - committed[count - 1] for count, t in receipts)
    first: dict[int, float] = {}
    for count, t in receipts:
        first[count] = min(t, first.get(count, t))
    to_first = sorted(t - committed[count - 1] for count, t in first.items())
    fan_out = sorted(t - first[count] for count, t in receipts)
    fresh = freshness(seen["seen"], committed)
    p99 = percentile(delays, 0.99)
    alone = adjacent["rps"]
    ratio = load["rps"] / alone if alone else None
    busy = machine_after[0] - machine_before[0]
    wall = machine_after[1] - machine_before[1]
    crowd_cpu = round(sum(p["cpu_s"] for p in seen["procs"]), 1)
    bench.results["B8"] = {
        "value": f"p99 {p99} s (staleness {percentile(fresh, 0.99)} s), B1 x{round(ratio, 2) if ratio else '?'}",
        "p99_s": p99, "p50_s": percentile(delays, 0.5),
        "commit_to_first_client_p50_s": percentile(to_first, 0.5), "commit_to_first_client_p99_s": percentile(to_first, 0.99),
        "fan_out_p50_s": percentile(fan_out, 0.5), "fan_out_p99_s": percentile(fan_out, 0.99),
        "staleness_p50_s": percentile(fresh, 0.5), "staleness_p99_s": percentile(fresh, 0.99),
        "clients": args.sse_clients, "clients_connected": seen["clients_connected"], "events": seen["events"],
        "crowd_open_before_b1": seen["open"], "crowd_opening_s": seen["opening_s"],
        "clients_with_final_count": sum(1 for ev in seen["seen"] if ev and ev[-1][0] == final), "final_count": final,
        "b1_rps_with_streams": round(load["rps"]), "b1_rps_alone": round(alone), "b1_rps_alone_first_run": bench.results.get("B1", {}).get("value"), "b1_p99_ms_with_streams": round(load["p99_ms"], 1),
        "b1_errors": load["errors"], "gateway_cpu_s": cpu.get("gateway"), "gateway_rss_mb": rss.get("gateway"),
        "crowd": seen["procs"], "crowd_cpu_s": crowd_cpu,
        "machine": {"wall_s": round(wall, 1), "busy_cpu_s": round(busy, 1), "cores": os.cpu_count(),
                    "not_measured_here_cpu_s": round(busy - sum(cpu.values()) - crowd_cpu * args.b1_seconds / (args.b1_seconds + 10), 1),
                    "loadavg_after": os.getloadavg()},
        "cpu_s": cpu, "ok": p99 is not None and p99 <= 1 and fresh and percentile(fresh, 0.99) <= 1
        and seen["clients_connected"] == args.sse_clients
        and (ratio is None or ratio >= 0.8),
    }


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """The shape of the stack Bench starts: every script that starts one takes the same."""
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--gateway-workers", type=int, default=2)
    parser.add_argument("--mail-concurrency", type=int, default=16)
    parser.add_argument("--scale", default="auction=3,mailer=2",
                        help="replicas per service for `cobuy up --scale` (the production shape)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--quick", action="store_true", help="shorter runs, smaller fan-outs")
    add_stack_arguments(parser)
    parser.add_argument("--sse-clients", type=int, default=5000, help="B8's crowd on one offer's stream")
    parser.add_argument("--sse-procs", type=int, default=4, help="processes sharing B8's crowd")
    parser.add_argument("--only", help="comma-separated scenario ids to run, e.g. B1,B3 (B1 brings B1r and B2, B3 B3r)")
    args = parser.parse_args()
    args.b1_seconds = 10 if args.quick else 30
    args.b1r_seconds = 8 if args.quick else 15
    args.page_seconds = 5 if args.quick else 10
    args.sellers = 2000 if args.quick else 10000
    args.due_offers = 200 if args.quick else 1000
    only = set(filter(None, args.only.upper().split(","))) if args.only else {k.upper() for k in TARGETS}
    bench = Bench(args)
    started = time.time()
    bench.start()
    try:
        if only & {"B1", "B1R", "B2"}:
            bench.b1_b2()
            bench.b1r()
        if "B8" in only:
            b8(bench)
        if only & {"B3", "B3R", "B7"}:
            bench.b3_b7_pages()
        # B4 seeds 10,000 registered sellers, and every later offer would invite them all: so the
        # closes (B5, B7) and the due offers (B6) come first, each measured on its own.
        if only & {"B5", "B7"}:
            bench.results["B5"] = bench.b5(args.sellers)
            bench.results.setdefault("B7", {})["close_seconds_by_reservations"] = {n: bench.b5(n, "B7")["value"] for n in (100, 1000)}
            bench.results["B7"]["close_seconds_by_reservations"][args.sellers] = bench.results["B5"]["value"]
        if "B6" in only:
            bench.b6()
        if "B4D" in only:
            bench.b4d()
        if "B4" in only:
            bench.b4()
    finally:
        bench.stop()
    if {"home_p50_ms_by_open_offers", "close_seconds_by_reservations"} <= set(bench.results.get("B7", {})):
        growth = bench.results["B7"]
        pages = growth["home_p50_ms_by_open_offers"]
        growth["ok"] = pages[1000] <= pages[100] * 3  # paginated: flat, not 10x
        growth["value"] = f"home p50 {pages}; close s {growth['close_seconds_by_reservations']}"
    else:
        bench.results.pop("B7", None)
    bench.results["elapsed_s"] = round(time.time() - started)
    (ROOT / "bench" / "results.json").write_text(json.dumps(bench.results, indent=2, default=str))
    ran = [k for k in TARGETS if k in bench.results]
    print(f"\n{'id':5} {'measured':>28}  {'target':42} ok")
    for key in ran:
        r = bench.results[key]
        print(f"{key:5} {str(r['value']):>28}  {TARGETS[key]:42} {'yes' if r['ok'] else 'NO'}")
    if "B1" in bench.results:
        b1 = bench.results["B1"]
        print(f"B1 p99 {b1['p99_ms']} ms, errors {b1['errors']}, count exact: {b1['count_exact']}, "
              f"ReservationCountChanged events: {b1['count_events']} for {b1['count_in_db']} reservations")
        print(f"B1 RSS MB: {b1['rss_mb']}")
        print(f"B2 stages of the count events, ms: {bench.results['B2']['stages_ms']}; {bench.results['B2']['samples']} "
              f"probes; their count GETs alone, ms: {bench.results['B2'].get('count_get_ms')}")
        print(f"B2 split, medians in ms (201 → the count covering it recorded, its recorded → applied, the GET that "
              f"showed it): {bench.results['B2'].get('breakdown_ms')}")
        print(f"B2 the offer's GET beside the probe, the two doors in turn every 100 ms: through the gateway "
              f"{bench.results['B2'].get('paired_get_ms', {}).get('gateway')}, straight to catalog "
              f"{bench.results['B2'].get('paired_get_ms', {}).get('catalog')}")
        print(f"B1 CPU s over {args.b1_seconds} s: {b1['cpu_s']}; the whole machine "
              f"{b1['machine_ms_per_reservation']} ms a reservation (bench/floor.py's unit), "
              f"{b1.get('machine_ms_until_last_mail')} until the last confirmation was sent "
              f"({b1.get('mail_drained_s_after_wrk')} s after wrk; bench/chain_floor.py's 'until the last mail'); "
              f"the hypervisor's steal, not counted: {b1.get('steal_s')} s in the window, "
              f"{b1.get('steal_s_until_last_mail')} until the last mail")
        print(f"B1 CPU a reservation until the last confirmation was sent, all components (the issue's CPU target, ≤ 4 ms): "
              f"{b1.get('cpu_ms_until_last_mail')} ms: {b1.get('ms_until_last_mail')}")
    if "B8" in bench.results:
        print("B8:", {k: v for k, v in bench.results["B8"].items() if k not in ("value", "ok")})
    print(f"elapsed {bench.results['elapsed_s']} s; details in bench/results.json")
    missed = [k for k in ran if not bench.results[k]["ok"]]
    return 1 if args.check and (missed or len(ran) < len(TARGETS) and not args.only) else 0


if __name__ == "__main__":
    sys.exit(main())
