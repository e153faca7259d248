"""What "ready" means for a host, in one place (:meth:`Host.health <citarion_host.host.Host.health>`).

The dashboard's ``/readyz``, ``citarion-host run``'s decision to give up, and tests all read this, so
they can never disagree. Ready: the host is started, its bus is connected, and every enabled bot it
runs is running (a bot an operator stopped does not count against it). A bus whose connection closed
for good makes the host *lost*: never ready again, and ``run`` stops and exits non-zero
(``docs/limits.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["UNREADY_TOPIC", "Health"]

#: Published once (delivered to this host's subscribers) when the host cannot go on.
UNREADY_TOPIC = "system.host.unready"


@dataclass(frozen=True)
class Health:
    """A host's readiness and why not: ``reasons`` is empty exactly when ``ready``."""

    ready: bool
    reasons: tuple[str, ...]
    backend: str
    connected: bool
    #: Per enabled bot placed on this host: its lifecycle state (``absent``: no runner).
    bots: dict[str, str] = field(default_factory=dict)
    #: Why the host cannot go on (its bus closed for good), or None.
    lost: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape ``/readyz`` serves."""
        return {
            "ready": self.ready,
            "reasons": list(self.reasons),
            "bus": {"backend": self.backend, "connected": self.connected},
            "bots": dict(self.bots),
            "lost": self.lost,
        }
