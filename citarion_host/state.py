"""Bot state: what a bot declares, and how its snapshots are encoded, checked, migrated and decoded.

A bot keeps state (positions, open orders, counters, indicator windows) in its own attributes. To have
the host keep that state across reloads, crash restarts and host restarts, the bot declares it::

    class Grid(Bot):
        class State(msgspec.Struct):          # or a pydantic model
            next_order: int = 1
            position: float = 0.0
            window: list[float] = []

and keeps those attributes (``self.next_order``, ``self.position``, ``self.window``) as it always did:
the default :meth:`Bot.snapshot` reads the attributes named like the fields, the default
:meth:`Bot.restore` sets them back. Bots whose state is not plain data override ``snapshot()`` /
``restore()``. ``state_version`` and ``migrate_state`` carry a stored state over a change of ``State``.

Why a declared model rather than pickling the object: the snapshot is JSON a person can read
(``citarion-host state show``), it survives a code change (the model says what a stored state must look
like, and a state that does not fit is refused naming the field instead of restored half-way), and it
never runs code while loading. Why msgspec for the envelope and the encoding: a snapshot is taken every
``[state] every_events`` events on the hot path; msgspec encodes a small state in a few microseconds.

A stored snapshot is a :class:`Snapshot`: the state as JSON plus what it covers (the stream sequence of
the last event applied on JetStream, that event's id everywhere, how many events were applied), the bot
type and the state version. See ``docs/state.md``.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import pydantic

from .errors import StateError

__all__ = [
    "SNAPSHOT_FORMAT",
    "Snapshot",
    "StateSpec",
    "decode_snapshot",
    "encode_snapshot",
    "restore_attributes",
    "snapshot_attributes",
    "state_fields",
    "state_spec",
]

#: Version of the :class:`Snapshot` envelope itself (not of any bot's state).
SNAPSHOT_FORMAT = 1

Kind = Literal["struct", "pydantic", "custom"]


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One stored snapshot of a bot's state, and the position in its inbox that it covers."""

    bot: str
    #: The bot type that wrote it (``type_name``, or ``module:qualname``): another type's state is refused.
    type: str
    #: The bot type's ``state_version`` when it was written (``migrate_state`` takes it from there).
    version: int
    #: Events applied to this state since the bot first started (across restarts).
    handled: int
    #: Stream sequence of the last event applied (JetStream), and the stream it belongs to.
    seq: int | None = None
    stream: str | None = None
    #: Id of the last event applied (every backend).
    event_id: str | None = None
    #: Wall-clock time of the snapshot (Unix ms), for people.
    time_ms: int = 0
    format: int = SNAPSHOT_FORMAT
    #: ``json``: ``state`` is the state as JSON; ``bytes``: a JSON string, base64 of what snapshot() gave.
    encoding: Literal["json", "bytes"] = "json"
    state: msgspec.Raw = msgspec.Raw(b"null")


@dataclass(frozen=True)
class StateSpec:
    """What one bot type declares about its state (see :func:`state_spec`)."""

    type_name: str
    model: type[Any] | None
    kind: Kind
    version: int
    fields: tuple[str, ...]


def type_key(bot_type: type[Any]) -> str:
    """How a snapshot names the bot type that wrote it."""
    name = getattr(bot_type, "type_name", "") or ""
    return name or f"{bot_type.__module__}:{bot_type.__qualname__}"


def state_spec(bot_type: type[Any]) -> StateSpec:
    """The state declaration of ``bot_type`` (a bot type that keeps state: ``Bot.keeps_state``).

    Raises :class:`StateError` for a ``State`` that is neither a msgspec Struct nor a pydantic model,
    or a ``state_version`` below 1.
    """
    model = getattr(bot_type, "State", None)
    version = getattr(bot_type, "state_version", 1)
    name = type_key(bot_type)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StateError(f"bot type {name!r}: state_version must be a whole number >= 1, got {version!r}")
    if model is None:
        return StateSpec(name, None, "custom", version, ())
    if isinstance(model, type) and issubclass(model, msgspec.Struct):
        return StateSpec(name, model, "struct", version, tuple(model.__struct_fields__))
    if isinstance(model, type) and issubclass(model, pydantic.BaseModel):
        return StateSpec(name, model, "pydantic", version, tuple(model.model_fields))
    raise StateError(
        f"bot type {name!r}: State must be a msgspec.Struct or a pydantic BaseModel class, got {model!r}"
    )


# -- the default snapshot/restore: fields <-> attributes ------------------------------------------


def state_fields(model: type[Any]) -> tuple[str, ...]:
    """The field names of a State model (a msgspec Struct's or a pydantic model's)."""
    fields = getattr(model, "__struct_fields__", None)
    return tuple(fields) if fields is not None else tuple(getattr(model, "model_fields", ()))


def snapshot_attributes(bot: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """The values of the attributes named like ``fields`` (the default ``Bot.snapshot``)."""
    values = {}
    for name in fields:
        try:
            values[name] = getattr(bot, name)
        except AttributeError:
            raise StateError(
                f"bot type {type_key(type(bot))!r} declares state field {name!r} but the bot has no "
                f"attribute {name!r}: set it in __init__, or override snapshot()/restore()"
            ) from None
    return values


def restore_attributes(bot: Any, state: Any, fields: tuple[str, ...]) -> None:
    """Set each attribute named like a field from ``state`` (the default ``Bot.restore``).

    An attribute made in ``__init__`` keeps its container type: a ``deque`` (a bounded window) its
    ``maxlen`` (the stored list is poured into a new deque of the same bound), a ``Counter`` stays a
    ``Counter`` and a ``defaultdict`` keeps its default (JSON has only lists and objects).
    """
    for name in fields:
        value = getattr(state, name)
        current = getattr(bot, name, None)
        if isinstance(current, deque) and isinstance(value, list | tuple):
            value = deque(value, maxlen=current.maxlen)
        elif isinstance(current, Counter) and type(value) is dict:
            value = Counter(value)
        elif isinstance(current, defaultdict) and type(value) is dict:
            value = defaultdict(current.default_factory, value)
        setattr(bot, name, value)


# -- encoding -------------------------------------------------------------------------------------


def _enc_hook(value: Any) -> Any:
    """What msgspec cannot encode by itself: pydantic models, deques, sets of anything."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, deque):
        return list(value)
    raise NotImplementedError(type(value).__name__)


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook, decimal_format="string")
_envelope_decoder = msgspec.json.Decoder(Snapshot)


def encode_snapshot(
    bot_id: str,
    spec: StateSpec,
    value: Any,
    *,
    handled: int,
    seq: int | None,
    stream: str | None,
    event_id: str | None,
) -> tuple[Snapshot, bytes]:
    """The snapshot of ``value`` (what ``snapshot()`` returned) and its stored bytes."""
    encoding: Literal["json", "bytes"] = "json"
    if isinstance(value, bytes | bytearray | memoryview):
        encoding, value = "bytes", bytes(value)
    try:
        state = _encoder.encode(value)
    except (TypeError, NotImplementedError) as exc:
        raise StateError(
            f"bot {bot_id!r}: its state cannot be encoded ({_unsupported(exc)}): declare plain data"
            " (numbers, strings, lists, dicts, msgspec Structs, pydantic models, Decimal, datetime),"
            " or override snapshot()/restore()"
        ) from None
    snapshot = Snapshot(
        bot=bot_id,
        type=spec.type_name,
        version=spec.version,
        handled=handled,
        seq=seq,
        stream=stream,
        event_id=event_id,
        time_ms=time.time_ns() // 1_000_000,
        encoding=encoding,
        state=msgspec.Raw(state),
    )
    return snapshot, _encoder.encode(snapshot)


def _unsupported(exc: BaseException) -> str:
    text = str(exc)
    return f"a {text}, which is not plain data" if isinstance(exc, NotImplementedError) else text


def read_snapshot(data: bytes, where: str) -> Snapshot:
    """Parse stored bytes; :class:`StateError` naming ``where`` if they are not a snapshot."""
    try:
        snapshot = _envelope_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise StateError(f"{where}: not a readable state snapshot ({exc})") from None
    if snapshot.format > SNAPSHOT_FORMAT:
        raise StateError(
            f"{where}: snapshot format {snapshot.format} is newer than this citarion-host's"
            f" ({SNAPSHOT_FORMAT}); upgrade citarion-host or reset the state"
        )
    return snapshot


# -- decoding: checks, migration ------------------------------------------------------------------

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")


def decode_snapshot(snapshot: Snapshot, spec: StateSpec, bot_type: type[Any]) -> Any:
    """The state ``snapshot`` holds, as ``spec``'s model (or plain JSON data for a custom state).

    Migrates it first when it was written by an older ``state_version`` (``bot_type.migrate_state``).
    Raises :class:`StateError` naming the bot and the field when the state does not fit.
    """
    bot = snapshot.bot
    if snapshot.type != spec.type_name:
        raise _refused(
            bot, "type", f"the stored state belongs to bot type {snapshot.type!r}, not {spec.type_name!r}"
        )
    if snapshot.version > spec.version:
        raise _refused(
            bot,
            "state_version",
            f"the stored state has version {snapshot.version}, newer than the bot's {spec.version}",
        )
    if snapshot.encoding == "bytes":
        if spec.model is not None:
            raise _refused(bot, "State", "the stored state is raw bytes but the bot declares a State model")
        return msgspec.json.decode(snapshot.state, type=bytes)
    raw: bytes = bytes(snapshot.state)
    if snapshot.version < spec.version:
        raw = _migrated(snapshot, spec, bot_type)
    if spec.model is None:
        return msgspec.json.decode(raw)
    if spec.kind == "struct":
        try:
            return msgspec.json.decode(raw, type=spec.model)
        except msgspec.ValidationError as exc:
            field, problem = _struct_problem(str(exc))
            raise _refused(bot, field, problem) from None
    try:
        return spec.model.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "<state>"
        raise _refused(bot, field, error["msg"]) from None


def _migrated(snapshot: Snapshot, spec: StateSpec, bot_type: type[Any]) -> bytes:
    data = msgspec.json.decode(snapshot.state)
    try:
        migrated = bot_type.migrate_state(data, snapshot.version)
    except Exception as exc:
        raise _refused(
            snapshot.bot,
            "state_version",
            f"migrate_state from version {snapshot.version} to {spec.version} failed:"
            f" {type(exc).__name__}: {exc}",
        ) from exc
    try:
        return _encoder.encode(migrated)
    except (TypeError, NotImplementedError) as exc:
        raise _refused(snapshot.bot, "state_version", f"migrate_state returned {_unsupported(exc)}") from None


def _struct_problem(message: str) -> tuple[str, str]:
    """msgspec's ``Expected `int`, got `str` - at `$.count``` as (field, problem)."""
    at = _AT.search(message)
    if at is not None:
        path = at.group("path").lstrip(".") or "<state>"
        return path, message[: at.start()]
    missing = _MISSING.search(message)
    if missing is not None:
        return missing.group("field"), "missing (the stored state has no value and the field no default)"
    return "<state>", message


def _refused(bot: str, field: str, problem: str) -> StateError:
    return StateError(
        f"bot {bot!r}: stored state refused, field {field!r}: {problem}; migrate it (state_version and"
        " migrate_state, docs/state.md), or start the bot fresh with reset_state = true on its [[bots]]"
        " entry (or `citarion-host state reset`)"
    )
