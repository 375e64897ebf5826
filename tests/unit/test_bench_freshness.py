"""B8's staleness: a coalesced count is not counted as delivered fast when the counts before it waited."""
from bench import run as bench_run


def test_each_count_waits_until_the_client_shows_a_count_that_includes_it():
    committed = [10.0, 10.1, 10.2, 10.3]  # counts 1..4
    seen = [[(2, 10.5), (4, 11.0)],  # count 1 and 2 shown at 10.5; 3 and 4 only at 11.0
            [(4, 10.4)]]
    delays = bench_run.freshness(seen, committed, samples=4)
    assert [round(d, 2) for d in delays] == sorted(round(d, 2) for d in [0.5, 0.4, 0.8, 0.7, 0.4, 0.3, 0.2, 0.1])


def test_a_client_that_never_shows_a_count_adds_no_delay_for_it():
    assert bench_run.freshness([[(1, 5.0)]], [4.0, 4.5], samples=2) == [1.0]
    assert bench_run.freshness([[]], [], samples=2) == []


def test_b2_probe_times_each_201_until_the_count_shown_covers_it_and_skips_refused_reservations():
    """count_freshness, which B1's run and bench/chain_floor.py --count share: a refused reservation
    (409) is not a sample; an accepted one is timed from its 201 until `shown()` reaches `committed()`."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers = iter([409, 201, 201])
    received = []

    class Reservations(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(next(answers, 201))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Reservations)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop, state = threading.Event(), {"committed": 0, "polls": 0}

    def committed():
        state["committed"] += 1  # each accepted probe adds one reservation
        state["shown_from"] = time.time() + 0.05  # the count is shown 50 ms after the 201
        return state["committed"]

    def shown():
        state["polls"] += 1
        if state["committed"] == 2:
            stop.set()  # the second sample is the last
        return state["committed"] if time.time() >= state["shown_from"] else state["committed"] - 1

    try:
        gets, probes = [], []
        taken = bench_run.count_freshness(f"http://127.0.0.1:{server.server_port}/reserve", "t@bench.example",
                                          committed, shown, stop, gets, probes)
    finally:
        server.shutdown()
        server.server_close()
    assert len(gets) == state["polls"]  # each count request timed
    assert len(received) == 3 and b'"probe-1-t@bench.example"' in received[0] and b"probe-3-" in received[2]
    assert len(taken) == 2  # the 409 was not a sample
    assert [p["taken"] for p in probes] == taken and all(0 <= p["last_get"] < p["taken"] for p in probes)
    assert [p["target"] for p in probes] == [1, 2] and probes[0]["reached"]
    assert 0.05 <= taken[0] < 0.2 and state["polls"] > 3  # polled until the count caught up, the rest not in it
    assert bench_run.freshness_figures([0.1] * 98 + [0.3, 0.9]) == {"value": 900.0, "samples": 100, "p50_ms": 100.0}
    assert bench_run.freshness_figures([0.1], [0.01] * 80 + [0.02] * 19 + [0.5])["count_get_ms"] == \
        {"p50": 10.0, "p90": 20.0, "p99": 20.0}
    assert bench_run.freshness_figures([])["value"] is None


def test_b2_breakdown_splits_each_probe_at_the_first_count_after_its_201_that_reaches_its_target():
    """probe_breakdown: the wait for the count that covers the probe, that count's way to catalog, the
    showing GET. A count recorded after the 201 but short of the probe's target (counted before the
    target was read) is not its count; a probe with no covering count applied in the window, or one
    that stop cut off before it saw its count, is left out; the slowest tenth is its own."""
    from datetime import datetime, timezone

    def at(seconds):
        return datetime.fromtimestamp(seconds, timezone.utc)

    rows = [(at(100.00), at(100.02), at(100.03), 10),   # recorded, sent, applied by catalog, count
            (at(100.12), at(100.14), at(100.15), 11),   # after the second probe's 201, short of its 13
            (at(100.30), at(100.35), at(100.40), 13),
            (at(101.00), None, None, 20)]               # never applied in the window

    def probe(at_, target, taken, last_get, reached=True):
        return {"at": at_, "target": target, "reached": reached, "taken": taken, "last_get": last_get}

    probes = [probe(99.95, 10, 0.10, 0.02),   # the first count: 50 ms later, applied 30 ms after
              probe(100.10, 13, 0.40, 0.05),  # not the count at 100.12 (11): the one at 100.30, 200 + 100
              probe(100.90, 20, 0.50, 0.01),  # its count was never applied: left out
              probe(100.20, 13, 0.70, 0.01, reached=False),  # cut off by stop: left out
              probe(102.00, 21, 0.60, 0.01)]  # no count after it
    split = bench_run.probe_breakdown(probes, rows)
    assert split["probes"] == 2
    assert split["slowest_tenth"] == {"taken": 400.0, "to_next_count": 200.0, "count_applied": 100.0, "last_get": 50.0}
    assert split["all"] == {"taken": 250.0, "to_next_count": 125.0, "count_applied": 65.0, "last_get": 35.0}
    assert bench_run.probe_breakdown([], rows) == {"probes": 0, "all": {}, "slowest_tenth": {}}
