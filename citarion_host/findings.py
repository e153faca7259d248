"""A config finding: one problem, located by file, bot id and key, from the loader to the CLI.

The loader (:mod:`~citarion_host.settings`), the wiring check (:mod:`~citarion_host.wiring`) and
:class:`~citarion_host.errors.ConfigError` all carry findings as objects, never as formatted text:
``check --json`` prints their fields, the text output prints :meth:`Finding.__str__`, and nothing
parses a message back. This module imports nothing from the package, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Finding", "Severity", "format_findings", "has_errors"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem: ``file`` ("" when no file is involved), ``bot_id`` (None for config-wide problems
    and for a ``[[bots]]`` entry without a valid id, whose ``key`` then starts with ``bots[i].``),
    the ``key`` path inside the bot or the file ("" when the problem is the file itself),
    the ``message``, and a ``suggestion`` (a close known value) when there is one."""

    severity: Severity
    file: str
    bot_id: str | None
    key: str
    message: str
    suggestion: str | None = None

    @property
    def text(self) -> str:
        """``file: bot 'id': key: message``, leaving out the parts that are empty."""
        subject = f"bot {self.bot_id!r}" if self.bot_id is not None else ""
        return ": ".join(part for part in (self.file, subject, self.key, self.message) if part)

    def __str__(self) -> str:
        return f"{self.severity}: {self.text}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(finding.severity == "error" for finding in findings)


def format_findings(findings: Sequence[Finding]) -> str:
    """Errors first, then warnings (each group in check order), then ``N errors, M warnings``."""
    errors = [f for f in findings if f.severity == "error"]
    warnings = [f for f in findings if f.severity == "warning"]
    lines = [str(f) for f in (*errors, *warnings)]
    lines.append(f"{_plural(len(errors), 'error')}, {_plural(len(warnings), 'warning')}")
    return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
