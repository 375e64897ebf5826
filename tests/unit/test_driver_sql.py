"""shared.db.driver_sql: a Core statement compiled once for the driver's cursor."""
import re

import pytest
from sqlalchemy import bindparam, column, table, update
from sqlalchemy.dialects.postgresql import psycopg

from shared.db import driver_sql

things = table("things", column("id"), column("state"))


def test_the_sql_names_the_callers_parameters_and_carries_the_literals_values():
    sql, literals = driver_sql(update(things).where(things.c.id == bindparam("id")).values(state="sent")
                               .returning(things.c.id), psycopg.dialect())
    assert "%(id)s" in sql and sql.startswith("UPDATE things SET state=")
    assert literals == {"state": "sent"}  # the caller's own `id` is not there: it has no value yet


def test_a_statement_that_expands_a_list_at_execution_is_refused():
    with pytest.raises(ValueError, match="expand"):
        driver_sql(update(things).where(things.c.state.in_(["a", "b"])).values(state="c"), psycopg.dialect())


def test_a_literal_whose_value_is_none_is_carried_as_null_not_taken_for_the_callers():
    """`.values(state=None)` binds a literal whose value is None (SQLAlchemy renders a placeholder for
    it, not NULL). driver_sql left every None out of the literals, taking it for a parameter the
    caller supplies, so the driver's cursor refused the statement for want of it (psycopg's
    "query parameter missing: state"). Only a bindparam declared without a value is the caller's."""
    sql, literals = driver_sql(update(things).where(things.c.id == bindparam("id")).values(state=None)
                               .returning(things.c.id), psycopg.dialect())
    assert literals == {"state": None}
    assert set(re.findall(r"%\((\w+)\)s", sql)) - literals.keys() == {"id"}  # every other placeholder has a value
