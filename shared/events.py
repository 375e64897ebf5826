"""Events as named, frozen dataclasses (cosmicpython's domain/events.py), and the reader consumers use.

A producer declares its events in its own `services/<producer>/events.py`; `record_event` takes
one, names the type after its class and writes `to_data()`: the JSON every consumer has always
read. A consumer never imports a producer's events: it `read`s the data into its own small
dataclass naming only the fields it uses. A key it does not name is ignored, so a producer may
add an optional field and keep its VERSION; removing, renaming or retyping a field is a new VERSION.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from shared import clock

T = TypeVar("T")


class Event:
    """Base of the producers' event dataclasses."""

    VERSION: ClassVar[int] = 1  # the envelope's `version`

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    def to_data(self) -> dict[str, Any]:
        return as_data(self)


def as_data(part: Any) -> dict[str, Any]:
    """An event, or a part of one, as it travels: nested parts and lists as JSON objects and
    arrays, instants as ISO 8601 UTC. (dataclasses.asdict did this with a deep copy of every value:
    a tenth of a reservation's CPU.)"""
    return {field.name: _as_json(getattr(part, field.name)) for field in dataclasses.fields(part)}


def _as_json(value: Any) -> Any:
    if isinstance(value, (str, int, float, type(None))):
        return value
    if isinstance(value, datetime):
        return clock.iso(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_data(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_as_json(item) for item in value)
    if isinstance(value, dict):
        return {key: _as_json(item) for key, item in value.items()}
    return copy.deepcopy(value)


def read(reader: type[T], data: dict[str, Any]) -> T:
    """The consumer's view of an event's data: the reader's fields only (nested readers, lists of
    them and instants read in turn); a field the data lacks takes the reader's default, or is a KeyError."""
    values = {}
    for name, hint, required in _reader_fields(reader):
        if name in data:
            values[name] = _read_value(hint, data[name])
        elif required:
            raise KeyError(name)
    return reader(**values)


@functools.lru_cache(maxsize=256)
def _reader_fields(reader: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, required) of each of a reader's fields, worked out once per reader: resolving the
    annotations (`typing.get_type_hints`, which evaluates each one from its string) was a tenth of the
    mailer's CPU while it planned a confirmation (py-spy --gil, B1's drain, 2026-11-27)."""
    hints = typing.get_type_hints(reader)
    return tuple((field.name, hints[field.name],
                  field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING)
                 for field in dataclasses.fields(reader))


def _read_value(hint: Any, value: Any) -> Any:
    if dataclasses.is_dataclass(hint):
        return read(hint, value)
    if typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        return [read(typing.get_args(hint)[0], item) for item in value]
    if hint is datetime:
        return datetime.fromisoformat(value)
    return value
