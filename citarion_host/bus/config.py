"""Backend configuration models (the ``[backend]`` section of a host config).

Pydantic, not msgspec: configuration is read once, and pydantic's error messages (with the key path)
are what a user editing TOML needs. See ``docs/configuration.md`` for every key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["BackendSettings", "NatsSettings", "NatsTlsSettings"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NatsTlsSettings(_Strict):
    """TLS for the NATS connection; paths are passed to an ``ssl.SSLContext``."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


class NatsSettings(_Strict):
    """NATS backend options (``[backend.nats]``); every key is described in ``docs/nats.md``."""

    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1)
    #: True: events are stored in a JetStream stream (persistent, durable, replayable). False: core
    #: NATS only (at-most-once, nothing stored; durable/replay subscriptions are refused).
    jetstream: bool = True
    stream: str = Field(default="citarion-events", pattern=r"^[^.*>\s]+$")
    #: Subjects the stream stores; default: every known domain (``<domain>.>``).
    subjects: list[str] | None = None
    storage: Literal["file", "memory"] = "file"
    replicas: int = Field(default=1, ge=1, le=5)
    max_age_s: float = Field(default=0, ge=0, description="0 = keep forever")
    max_bytes: int = Field(default=-1, ge=-1, description="-1 = unlimited")
    duplicate_window_s: float = Field(default=120, gt=0)
    #: True: this host owns the stream's settings and brings an existing stream in line with them.
    #: False: a stream whose settings differ is refused with the differences (a missing one is still
    #: created). Default false, so hosts sharing a stream never overwrite each other's settings.
    manage_stream: bool = False
    #: Connection name shown in NATS monitoring; default: this machine's host name.
    connection_name: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: str | None = None
    #: Path of an NKey seed file.
    nkeys_seed: str | None = None
    tls: NatsTlsSettings | None = None
    #: "shared": one connection (the credentials above) carries every bot's traffic. "per-bot": each
    #: bot publishes and subscribes over a connection of its own, authenticated as that bot's NATS user
    #: (``citarion-host nats-config``), so the server itself refuses what the bot was not granted; the
    #: credentials above are then the host user's (stream, consumers, key-value, reports).
    isolation: Literal["shared", "per-bot"] = "shared"
    #: Per-bot isolation: the directory of the bots' NKey seed files, ``<bot id>.nk`` (the
    #: ``secrets/bots`` directory ``nats-config`` writes). ``CITARION_BOT_SEED_<ID>`` (the seed itself)
    #: takes precedence for a bot.
    bot_seeds_dir: str | None = None
    connect_timeout_s: float = Field(default=2.0, gt=0)
    #: Reconnect backoff: the first retry of a server waits this long, doubling up to the maximum.
    reconnect_wait_s: float = Field(default=0.5, gt=0)
    reconnect_wait_max_s: float = Field(default=5.0, gt=0)
    max_reconnect_attempts: int = Field(default=-1, ge=-1, description="-1 = forever")
    #: How often the connection pings the server, and how many pings may go unanswered before it is
    #: taken as dead and reconnected (to another server of the list when there is one). nats-py's own
    #: defaults (120 s, 2) left a server that stopped answering without closing the connection (frozen,
    #: a link gone dead, a NAT that forgot it) unnoticed for up to six minutes: "connected" and ready,
    #: every publish unstored meanwhile.
    ping_interval_s: float = Field(default=5.0, gt=0)
    max_outstanding_pings: int = Field(default=2, ge=1)
    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliver: int = Field(default=5, ge=1)
    nak_backoff_s: list[float] = Field(default_factory=lambda: [0.1, 0.5, 2.0, 5.0], min_length=1)
    #: Where a durable subscription starts the first time its name is seen (later: where it stopped).
    durable_start: Literal["new", "all"] = "new"
    #: A stream-backed subscription without a durable name is removed by the server after this long
    #: without a subscriber (covers a host that dies without unsubscribing).
    inactive_threshold_s: float = Field(default=300.0, gt=0)
    #: A publish that is not stored within this time raises ``PublishError``.
    publish_timeout_s: float = Field(default=10.0, gt=0)
    #: Resend (same ``Nats-Msg-Id``, so never stored twice) when no ack came within this time.
    publish_ack_timeout_s: float = Field(default=2.0, gt=0)
    #: Published-but-not-yet-acknowledged events per bus; publishers wait beyond it.
    publish_max_in_flight: int = Field(default=4096, ge=1)
    #: Timeout of JetStream API calls (stream/consumer management).
    api_timeout_s: float = Field(default=5.0, gt=0)
    #: How often the bus checks that its stream consumers are still on the server (one request for all
    #: of them); a consumer deleted meanwhile is reported and made again. 0: never.
    consumer_check_s: float = Field(default=10.0, ge=0)
    #: The lean publish/receive/ack path through nats-py's internals (``bus/nats/_client.py``); false
    #: keeps to nats-py's public API (slower, same behaviour). Falls back by itself if they differ.
    lean_wire: bool = True

    @field_validator("nak_backoff_s")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("delays must be >= 0")
        return value


class BackendSettings(_Strict):
    """Which event bus to run on, and its options."""

    type: Literal["memory", "nats"] = "memory"
    #: Bound of each subscriber's backlog (see the overflow policy in docs/events.md).
    max_pending: int = Field(default=10_000, ge=1)
    #: How many critical/high events may wait in one subscriber's backlog before their publishers wait
    #: for room (None: the subscriber's ``max_pending``); the memory bound of a slow subscriber.
    max_pending_urgent: int | None = Field(default=None, ge=1)
    #: How long such a publisher waits before ``BackpressureTimeoutError`` (nothing is dropped).
    backpressure_timeout_s: float = Field(default=10.0, gt=0)
    #: Handlers one at a time in a fixed order, so the same inputs give the same run on every backend
    #: (``bus/sequencer.py``, docs/events.md); false: concurrent delivery (live feeds, slow I/O bots).
    deterministic: bool = True
    #: Deterministic mode: how long the sequencer waits for a delivery before going on without it.
    stall_timeout_s: float = Field(default=30.0, gt=0)
    #: Largest encoded event accepted (docs/limits.md): bigger ones are refused on publish (NATS) and
    #: dead-lettered on receipt. Keep it below the NATS server's ``max_payload`` (1 MiB by default).
    max_event_bytes: int = Field(default=512 * 1024, ge=16 * 1024)
    nats: NatsSettings = Field(default_factory=NatsSettings)
