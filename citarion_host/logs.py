"""Structured logging: one JSON object per line (or key=value text for a terminal).

Fields passed with ``extra={...}`` become top-level keys, so logs can be filtered by ``bot``,
``topic``, ``event_id``... without parsing messages.

Credentials inside URLs are masked in every formatted line (``redact.mask_text``), whatever logged
them: a server URL with a password in an error, a field, a library's message or a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal, TextIO

from .redact import mask_text

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging"]

_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _RESERVED}


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., <extra fields>}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return mask_text(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level logger: msg key=value ...`` for humans at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{key}={value}" for key, value in _fields(record).items())
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{clock} {record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extra:
            line = f"{line} {extra}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return mask_text(line)


def configure_logging(
    level: str = "INFO", fmt: Literal["json", "text"] = "text", stream: TextIO | None = None
) -> None:
    """Send ``citarion_host`` logs (and plugins') to ``stream`` (stderr) in ``fmt``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_citarion", False):
            root.removeHandler(existing)
    handler._citarion = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
