"""What PostgreSQL reads to run a statement, in the plan it would choose for given values (custom) and in
the one it may settle on for any values once psycopg has prepared the statement (generic)."""
from __future__ import annotations

import re

from sqlalchemy import Engine

MODES = ("force_custom_plan", "force_generic_plan")


def rows_read(plan: dict) -> int:
    """What a plan's scans read: the rows they returned and those their filters threw away."""
    own = 0
    if "Scan" in plan["Node Type"]:
        own = (plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)) * plan["Actual Loops"]
    return own + sum(rows_read(child) for child in plan.get("Plans", []))


def executed_plan(engine: Engine, statement: str, parameters: dict, mode: str, setup: tuple[str, ...] = ()) -> dict:
    """EXPLAIN ANALYZE of a statement as SQLAlchemy sent it to psycopg (its %(name)s parameters),
    prepared, in a transaction that is rolled back; `setup` runs first in that transaction."""
    from psycopg import sql

    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
    prepared = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", statement)
    arguments = sql.SQL(", ").join(sql.Literal(parameters[name]) for name in names)
    execute = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE planned") + (
        sql.SQL("({})").format(arguments) if names else sql.SQL(""))
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        with raw.cursor() as cursor:
            cursor.execute(f"SET plan_cache_mode = {mode}")
            for line in setup:
                cursor.execute(line)
            cursor.execute(f"PREPARE planned AS {prepared}")
            cursor.execute(execute)
            [[plan]] = cursor.fetchall()
        raw.rollback()  # what the EXPLAIN ran
        raw.execute("DEALLOCATE planned")
    return plan[0]["Plan"]


def blocks_read(plan: dict) -> int:
    """The buffers a plan's scans visited (an UPDATE's own writes left out): dead rows and dead index
    entries count here, where the scans' rows do not."""
    if "Scan" in plan["Node Type"]:  # its children's included (a bitmap heap scan's index scan)
        return plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    return sum(blocks_read(child) for child in plan.get("Plans", []))


class Statements:
    """The statements run on an engine while it is entered, each with the `queue_plans` settings sent earlier
    in its own transaction (not in another's: a read whose transaction sent none is planned as PostgreSQL
    plans it, with every plan allowed). kept: [(statement, parameters, settings)] of those `keep` selects."""

    def __init__(self, engine: Engine, keep):
        self.engine = engine
        self.keep = keep
        self.kept: list[tuple[str, dict, tuple[str, ...]]] = []
        self._sent: dict = {}  # connection -> the settings its transaction sent so far

    def _execute(self, conn, _cursor, statement, parameters, _context, _many):
        if "set_config" in statement:
            self._sent.setdefault(conn, []).append(statement)
        elif self.keep(statement):
            self.kept.append((statement, parameters, tuple(self._sent.get(conn, ()))))

    def _end(self, conn, *_):
        self._sent.pop(conn, None)

    def __enter__(self) -> "Statements":
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self._execute)
        for name in ("begin", "commit", "rollback"):
            event.listen(self.engine, name, self._end)
        return self

    def __exit__(self, *_) -> None:
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._execute)
        for name in ("begin", "commit", "rollback"):
            event.remove(self.engine, name, self._end)
