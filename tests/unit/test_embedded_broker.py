"""The embedded transport under processes that declare at the same instant (as `cobuy up` starts
a dozen of them): every binding survives and no process reads a half-written table. kombu's stock
filesystem transport fails this (an empty or doubly written exchange table)."""
from __future__ import annotations

import json
import multiprocessing
import sys

from kombu import Connection, Exchange, Queue

PROCESSES, ROUNDS = 6, 30


def _declare(folder: str, index: int, barrier, rounds: int) -> None:
    from shared.embedded_broker import AtomicTransport

    connection = Connection("filesystem://", transport=AtomicTransport, transport_options={
        "data_folder_in": folder, "data_folder_out": folder, "control_folder": f"{folder}/control"})
    failures = 0
    for r in range(rounds):
        barrier.wait()
        try:
            Queue(f"q{index}", exchange=Exchange(f"x{r}", type="topic"), routing_key="k")(
                connection.default_channel).declare()
        except Exception:
            failures += 1
    connection.release()
    sys.exit(min(failures, 100))


def test_concurrent_declarations_keep_every_binding(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(PROCESSES)
    workers = [context.Process(target=_declare, args=(str(tmp_path), i, barrier, ROUNDS)) for i in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0] * PROCESSES  # no declaration failed
    for r in range(ROUNDS):
        table = json.loads((tmp_path / "control" / f"x{r}.exchange").read_text())
        assert sorted(q[2] for q in table) == sorted(f"q{i}" for i in range(PROCESSES))
