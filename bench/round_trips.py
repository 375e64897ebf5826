"""What the reservation's transaction costs by how it talks to PostgreSQL, in client and backend
CPU: `python bench/round_trips.py [N]`.

The common reservation is BEGIN, the lock with the offer, the insert with its event, COMMIT: four
round trips through psycopg. Two ways to make them two were tried against it here, on a table of
the same shape (a shared advisory lock joined to the offer, then an `INSERT … SELECT … ON CONFLICT`
in a CTE):

- plain: what cobuy does (extended protocol, statements prepared by psycopg after five runs);
- pipeline: psycopg's pipeline mode, BEGIN sent with the first statement and COMMIT with the second;
- simple: two simple-protocol queries, `BEGIN; <lock>` and `<insert>; COMMIT`, parameters bound
  on the client (psycopg's ClientCursor), so nothing is prepared on the server.

Process CPU of this client and of the connection's backend (read from /proc), per transaction.
"""
from __future__ import annotations

import argparse
import os
import time
import uuid

import psycopg

LOCK_AND_OFFER = ("SELECT o.id, o.title, o.closed FROM (SELECT pg_advisory_xact_lock_shared(%(k)s)) AS l "
                  "LEFT JOIN rt_offers AS o ON o.id = %(o)s")
INSERT = ("WITH ins AS (INSERT INTO rt_reservations SELECT %(id)s, o.id, %(e)s FROM rt_offers AS o "
          "WHERE o.id = %(o)s AND NOT o.closed ON CONFLICT DO NOTHING RETURNING id) SELECT count(*) FROM ins")


def backend_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn", default="host=127.0.0.1 user=postgres dbname=postgres")
    args = parser.parse_args()
    table = f"rt_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(args.dsn, autocommit=True)
    admin.execute(f"CREATE SCHEMA {table}")
    options = f"-c search_path={table}"
    try:
        admin.execute(f"CREATE TABLE {table}.rt_offers (id text PRIMARY KEY, closed bool, title text)")
        admin.execute(f"CREATE TABLE {table}.rt_reservations (id text PRIMARY KEY, offer_id text, email text, "
                      "UNIQUE (offer_id, email))")
        admin.execute(f"INSERT INTO {table}.rt_offers VALUES ('o', false, 't')")
        extended = psycopg.connect(args.dsn, options=options)
        simple = psycopg.connect(args.dsn, options=options, autocommit=True, cursor_factory=psycopg.ClientCursor)

        def plain(e: str) -> None:
            extended.execute(LOCK_AND_OFFER, {"k": 1, "o": "o"}).fetchone()
            extended.execute(INSERT, {"id": str(uuid.uuid4()), "e": e, "o": "o"}).fetchone()
            extended.commit()

        def pipeline(e: str) -> None:
            with extended.pipeline():
                extended.execute(LOCK_AND_OFFER, {"k": 1, "o": "o"}).fetchone()
                inserted = extended.execute(INSERT, {"id": str(uuid.uuid4()), "e": e, "o": "o"})
                extended.commit()
                inserted.fetchone()

        def simple_protocol(e: str) -> None:
            cursor = simple.cursor()
            cursor.execute("BEGIN; " + LOCK_AND_OFFER, {"k": 1, "o": "o"})
            cursor.nextset()
            cursor.fetchone()
            cursor.execute(INSERT + "; COMMIT", {"id": str(uuid.uuid4()), "e": e, "o": "o"})
            cursor.fetchone()

        ways = {"plain": (plain, extended), "pipeline": (pipeline, extended), "simple": (simple_protocol, simple)}
        for r in range(args.rounds):
            for name, (way, connection) in ways.items():
                for i in range(200):  # warm: psycopg prepares after five runs
                    way(f"warm-{r}-{name}-{i}")
                pid = connection.info.backend_pid
                client, backend, wall = time.process_time(), backend_cpu(pid), time.perf_counter()
                for i in range(args.n):
                    way(f"{r}-{name}-{i}")
                client, backend = time.process_time() - client, backend_cpu(pid) - backend
                wall = time.perf_counter() - wall
                print(f"round {r + 1} {name:8}: client {client / args.n * 1e6:4.0f} µs, backend "
                      f"{backend / args.n * 1e6:4.0f} µs, wall {wall / args.n * 1e6:4.0f} µs a transaction")
        extended.close()
        simple.close()
    finally:
        admin.execute(f"DROP SCHEMA {table} CASCADE")


if __name__ == "__main__":
    main()
