"""Plain data where JSON falls short, for the bots' state (``docs/state.md``).

JSON has no NaN or infinity: msgspec writes them as ``null``, which a ``float`` field then refuses, so a
snapshot holding one could never be restored. The statistics the desk bots keep (a cointegration fit,
an OU fit, a Johansen basket, an arbitrage plan, a quote) are frozen records of numbers in which a
degenerate window can put one. :func:`record` writes such a record with every non-finite float as its
``repr`` (``"nan"``, ``"inf"``, ``"-inf"``) and :func:`record_of` reads it back, bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

__all__ = ["Record", "record", "record_of"]

#: A record as JSON data: field name -> number, non-finite float as a string, or a list of those.
Record = dict[str, Any]
T = TypeVar("T")


def record(obj: Any) -> Record:
    """The fields of dataclass ``obj`` as JSON-safe data (numbers, and tuples of numbers)."""
    return {field.name: _out(getattr(obj, field.name)) for field in dataclasses.fields(obj)}


def record_of(cls: type[T], data: Record) -> T:
    """An instance of dataclass ``cls`` from :func:`record`'s data (its fields hold numbers only)."""
    return cls(**{name: _in(value) for name, value in data.items()})


def _out(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, tuple | list):
        return [_out(v) for v in value]
    return value


def _in(value: Any) -> Any:
    if isinstance(value, str):
        return float(value)
    if isinstance(value, list):
        return tuple(_in(v) for v in value)
    return value
