"""RSK, the risk guard: watches each bot's account and blocks the bot when it breaks a limit.

It rebuilds every bot's equity independently of the exchange, from what is on the bus: the latest
``trading.position.updated`` per (bot, series) gives quantity and cash, candles give fresher marks::

    equity = cash + sum(quantity x mark)        gross exposure = sum(|quantity x mark|)
    drawdown = (peak equity - equity) / peak equity

Limits, checked on every position update and every candle of a held series:

* ``drawdown``: drawdown >= ``max_drawdown``;
* ``exposure``: gross exposure > ``max_gross_exposure`` (quote currency; off when unset);
* ``loss_streak``: ``max_loss_streak`` consecutive position updates that realized a loss (a
  realized profit resets the streak).

A breach publishes ``risk.alert.triggered`` (RiskAlert, severity critical, priority critical, key
``<kind>:<botId>`` so receivers can de-duplicate) and ``risk.block.set`` ``{"botId", "kind",
"reason", "key"}``; the exchange then refuses the bot's risk-increasing orders. One block per bot at
a time. It is cleared (``risk.block.cleared`` plus a ``risk.alert.resolved`` info alert):

* drawdown: after ``cooldown_bars`` bars (the peak is re-based to the current equity, so the next
  block needs a fresh loss) or as soon as the drawdown is back under ``drawdown_clear_ratio`` x
  the limit;
* exposure: as soon as the exposure is back under ``exposure_clear_ratio`` x the limit (the margin
  keeps a position hovering at the limit from flapping blocked/unblocked with every tick);
* loss streak: after ``cooldown_bars`` bars (the streak restarts from zero).

Bars are counted on data time: each candle with a later open time than any before advances the
guard's clock by one.

Its state (:class:`RiskGuardState`: every account with its running sums, peak, streak and block, the
marks, the clock) survives restarts (``docs/state.md``): a restarted guard neither forgets a block nor
re-bases a peak.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
from pydantic import Field

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Candle, Order, Position, RiskAlert

from .common import SeriesKey, StrictParams

__all__ = ["AccountState", "RiskGuard", "RiskGuardParams", "RiskGuardState", "citarion_bot_types"]


class RiskGuardParams(StrictParams):
    max_drawdown: float = Field(default=0.10, gt=0, lt=1)
    max_gross_exposure: float | None = Field(default=None, gt=0)
    max_loss_streak: int | None = Field(default=5, ge=1)
    cooldown_bars: int = Field(default=30, ge=1)
    exposure_clear_ratio: float = Field(default=0.9, gt=0, le=1)
    drawdown_clear_ratio: float = Field(default=0.5, ge=0, lt=1)
    bots: list[str] = []


class _Clear:
    """What :meth:`RiskGuard._assess` returns for a blocked account: look at clearing it instead."""


_CLEAR = _Clear()


@dataclass(slots=True)
class _Block:
    kind: str
    since: int
    reason: str


@dataclass(slots=True)
class _Account:
    """One bot's account as the guard rebuilds it, with its marked value kept incrementally.

    ``values[key]`` is ``quantity x mark`` of each series; ``value`` and ``exposure`` are their sum
    and the sum of their absolute values, moved by the difference when a mark or a quantity changes
    (O(1) per candle instead of a sum over every series) and recomputed from scratch on every
    position report, so rounding cannot drift further than one fill apart.
    """

    cash: float = 0.0
    quantities: dict[SeriesKey, float] = field(default_factory=dict)
    realized: dict[SeriesKey, float] = field(default_factory=dict)
    values: dict[SeriesKey, float] = field(default_factory=dict)
    value: float = 0.0
    exposure: float = 0.0
    peak: float | None = None
    streak: int = 0
    fills: int = 0
    block: _Block | None = None
    alerts: int = 0

    def revalue(self, key: SeriesKey, mark: float) -> None:
        """The series ``key`` is now marked at ``mark``."""
        old, new = self.values[key], self.quantities[key] * mark
        self.values[key] = new
        self.value += new - old
        self.exposure += abs(new) - abs(old)

    def recompute(self, marks: dict[SeriesKey, float]) -> None:
        self.values = {k: q * marks.get(k, 0.0) for k, q in self.quantities.items()}
        self.value = sum(self.values.values())
        self.exposure = sum(abs(v) for v in self.values.values())


class AccountState(msgspec.Struct, kw_only=True):
    """One :class:`_Account`, its running sums exactly as they stand (not recomputed)."""

    cash: float = 0.0
    quantities: list[tuple[SeriesKey, float]] = []
    realized: list[tuple[SeriesKey, float]] = []
    values: list[tuple[SeriesKey, float]] = []
    value: float = 0.0
    exposure: float = 0.0
    peak: float | None = None
    streak: int = 0
    fills: int = 0
    block: _Block | None = None
    alerts: int = 0

    @classmethod
    def of(cls, account: _Account) -> AccountState:
        return cls(
            cash=account.cash,
            quantities=list(account.quantities.items()),
            realized=list(account.realized.items()),
            values=list(account.values.items()),
            value=account.value,
            exposure=account.exposure,
            peak=account.peak,
            streak=account.streak,
            fills=account.fills,
            block=account.block,
            alerts=account.alerts,
        )

    def account(self) -> _Account:
        return _Account(
            cash=self.cash,
            quantities=dict(self.quantities),
            realized=dict(self.realized),
            values=dict(self.values),
            value=self.value,
            exposure=self.exposure,
            peak=self.peak,
            streak=self.streak,
            fills=self.fills,
            block=self.block,
            alerts=self.alerts,
        )


class RiskGuardState(msgspec.Struct, kw_only=True):
    """The guard's accounts, which of them hold each series (by bot id), its marks and clock."""

    accounts: dict[str, AccountState] = {}
    holders: list[tuple[SeriesKey, list[str]]] = []
    marks: list[tuple[SeriesKey, float]] = []
    clock: int = 0
    now: int = -1
    counts: dict[str, int] = {}


class RiskGuard(Bot[RiskGuardParams]):
    type_name = "risk-guard"
    description = "RSK: risk guard; drawdown / exposure / loss-streak limits -> critical alert + bot block"
    State = RiskGuardState

    def __init__(self, ctx: BotContext, params: RiskGuardParams) -> None:
        super().__init__(ctx, params)
        self.accounts: dict[str, _Account] = {}
        self.holders: dict[SeriesKey, list[_Account]] = {}  # accounts with a position entry per series
        self.marks: dict[SeriesKey, float] = {}
        self.clock = 0
        self.now = -1
        self.counts: Counter[str] = Counter()
        # read on every candle (a params attribute costs about twice a plain one)
        self._limits = (params.max_drawdown, params.max_gross_exposure, params.max_loss_streak)
        # the exposure an exposure block clears under (``_clearable``'s product, computed once): most
        # blocks the candles find are exposure blocks still over it
        limit = params.max_gross_exposure
        self._exposure_clear = None if limit is None else limit * params.exposure_clear_ratio

    def snapshot(self) -> RiskGuardState:
        owner = {id(account): bot_id for bot_id, account in self.accounts.items()}
        return RiskGuardState(
            accounts={bot_id: AccountState.of(account) for bot_id, account in self.accounts.items()},
            holders=[(key, [owner[id(a)] for a in accounts]) for key, accounts in self.holders.items()],
            marks=list(self.marks.items()),
            clock=self.clock,
            now=self.now,
            counts=self.counts,
        )

    def restore(self, state: RiskGuardState) -> None:
        self.accounts = {bot_id: stored.account() for bot_id, stored in state.accounts.items()}
        self.holders = {key: [self.accounts[b] for b in bot_ids] for key, bot_ids in state.holders}
        self.marks = dict(state.marks)
        self.clock, self.now = state.clock, state.now
        self.counts = Counter(state.counts)

    def watches(self, bot_id: str) -> bool:
        return not self.params.bots or bot_id in self.params.bots

    def equity(self, account: _Account) -> float:
        return account.cash + account.value

    def exposure(self, account: _Account) -> float:
        return account.exposure

    async def handle(self, event: Event) -> None:
        payload = event.payload
        if isinstance(payload, Candle):
            key, mark = (payload.exchange, payload.symbol), payload.close
            self.marks[key] = mark
            if payload.open_time > self.now:
                self.now = payload.open_time
                self.clock += 1
            # Every candle, every account: the decisions are synchronous, a coroutine is awaited only
            # for an account with something to publish (a breach or a cleared block). A holder of the
            # series is revalued right before it is assessed (``_Account.revalue``, inline: the same
            # arithmetic; an account's figures never depend on another's).
            max_drawdown, max_exposure, max_streak = self._limits
            exposure_clear = self._exposure_clear
            for bot_id, account in self.accounts.items():
                quantity = account.quantities.get(key)
                if quantity is not None:
                    if quantity:
                        values = account.values
                        old, new = values[key], quantity * mark
                        values[key] = new
                        account.value += new - old
                        account.exposure += abs(new) - abs(old)
                    # else: a flat series is worth 0.0 at any mark, what ``values`` already holds (its
                    # sign too: the quantity's, the mark > 0), so the sums would move by 0.0
                    # _assess's peak and "all is well", inline: what nearly every candle finds
                    equity, peak = account.cash + account.value, account.peak
                    if peak is None or equity > peak:
                        peak = account.peak = equity
                    if account.block is None:
                        if (
                            ((peak - equity) / peak if peak > 0 else 0.0) < max_drawdown
                            and (max_exposure is None or not account.exposure > max_exposure)
                            and (max_streak is None or account.streak < max_streak)
                        ):
                            continue
                        breach = self._assess(account)  # the peak moved already: the same answer
                        if isinstance(breach, tuple):
                            await self._breach(event, bot_id, account, *breach)
                        continue
                # Blocked (a holder or not): may it be cleared? An exposure block still over its clear
                # level is what nearly every candle finds (``_clearable``'s first answer, inline).
                block = account.block
                if block is None or (
                    exposure_clear is not None
                    and block.kind == "exposure"
                    and account.exposure > exposure_clear
                ):
                    continue
                cleared = self._clearable(account)
                if cleared is not None:
                    await self._cleared(event, bot_id, cleared)
        elif isinstance(payload, Position) and self.watches(payload.bot_id):
            account = self.accounts.setdefault(payload.bot_id, _Account())
            key = (payload.exchange, payload.symbol)
            if payload.cash is not None:
                account.cash = payload.cash
            if key not in account.quantities:
                self.holders.setdefault(key, []).append(account)
            account.quantities[key] = payload.quantity
            self.marks.setdefault(key, payload.mark_price)
            account.recompute(self.marks)
            realized = payload.realized_pnl - account.realized.get(key, 0.0)
            account.realized[key] = payload.realized_pnl
            if realized < -0.005:
                account.streak += 1
            elif realized > 0.005:
                account.streak = 0
            await self._check(event, payload.bot_id, account)
        elif (
            isinstance(payload, Order)
            and event.topic == "trading.order.filled"
            and payload.bot_id in self.accounts
        ):
            self.accounts[payload.bot_id or ""].fills += 1

    async def _check(self, event: Event, bot_id: str, account: _Account) -> None:
        breach = self._assess(account)
        if isinstance(breach, tuple):
            await self._breach(event, bot_id, account, *breach)
        elif breach is not None:  # blocked: may it be cleared?
            await self._maybe_clear(event, bot_id, account)

    def _assess(self, account: _Account) -> tuple[str, float, float, str] | _Clear | None:
        """Move the account's peak; what breaches (kind, value, limit, message), :data:`_CLEAR` if it
        is blocked (a clear is looked at instead), None if all is well."""
        equity = account.cash + account.value  # self.equity(account), inline: every candle, every holder
        peak = account.peak
        if peak is None or equity > peak:  # max(peak, equity), without the call
            peak = account.peak = equity
        if account.block is not None:
            return _CLEAR
        p = self.params
        drawdown = (peak - equity) / peak if peak > 0 else 0.0
        exposure = account.exposure
        if drawdown >= p.max_drawdown:
            return (
                "drawdown",
                drawdown,
                p.max_drawdown,
                f"drawdown {drawdown:.1%} from peak equity {peak:.2f} (limit {p.max_drawdown:.1%})",
            )
        if p.max_gross_exposure is not None and exposure > p.max_gross_exposure:
            return (
                "exposure",
                exposure,
                p.max_gross_exposure,
                f"gross exposure {exposure:.2f} over limit {p.max_gross_exposure:.2f}",
            )
        if p.max_loss_streak is not None and account.streak >= p.max_loss_streak:
            return (
                "loss_streak",
                float(account.streak),
                float(p.max_loss_streak),
                f"{account.streak} losing exits in a row (limit {p.max_loss_streak})",
            )
        return None

    async def _breach(
        self,
        event: Event,
        bot_id: str,
        account: _Account,
        kind: str,
        value: float,
        limit: float,
        message: str,
    ) -> None:
        key = f"{kind}:{bot_id}"
        account.block = _Block(kind, self.clock, message)
        account.alerts += 1
        self.counts[kind] += 1
        alert = RiskAlert(
            kind=kind,
            severity="critical",
            message=f"{bot_id}: {message}",
            bot_id=bot_id,
            value=round(value, 6),
            limit=limit,
            key=key,
        )
        meta = {"dataTime": self.now}
        await self.ctx.publish(
            "risk.alert.triggered", alert, priority="critical", causation_id=event.id, metadata=meta
        )
        block = {"botId": bot_id, "kind": kind, "reason": message, "key": key}
        await self.ctx.publish(
            "risk.block.set", block, priority="critical", causation_id=event.id, metadata=meta
        )
        self.ctx.log.warning("bot blocked: %s: %s", bot_id, message)

    async def _maybe_clear(self, event: Event, bot_id: str, account: _Account) -> None:
        block = self._clearable(account)
        if block is not None:
            await self._cleared(event, bot_id, block)

    def _clearable(self, account: _Account) -> _Block | None:
        """Lift the account's block if it may be (then its peak or streak starts afresh); the lifted
        block, to announce, or None."""
        block = account.block
        if block is None:
            return None
        p, kind = self.params, block.kind  # asked on every candle while blocked: no calls on the way
        if kind == "exposure":
            limit = p.max_gross_exposure
            if limit is not None and account.exposure > limit * p.exposure_clear_ratio:
                return None
        else:
            waited = self.clock - block.since >= p.cooldown_bars
            if kind == "drawdown":
                equity, peak = account.cash + account.value, account.peak or 0.0
                recovered = peak > 0 and (peak - equity) / peak < p.max_drawdown * p.drawdown_clear_ratio
                if not (waited or recovered):
                    return None
                account.peak = equity
            elif not waited:
                return None
            else:
                account.streak = 0
        account.block = None
        return block

    async def _cleared(self, event: Event, bot_id: str, block: _Block) -> None:
        key = f"{block.kind}:{bot_id}"
        meta = {"dataTime": self.now}
        cleared = {"botId": bot_id, "kind": block.kind, "reason": f"cleared: {block.reason}", "key": key}
        await self.ctx.publish(
            "risk.block.cleared", cleared, priority="high", causation_id=event.id, metadata=meta
        )
        resolved = RiskAlert(
            kind=block.kind,
            severity="info",
            message=f"{bot_id}: {block.kind} block cleared",
            bot_id=bot_id,
            key=key,
        )
        await self.ctx.publish(
            "risk.alert.resolved", resolved, priority="high", causation_id=event.id, metadata=meta
        )
        self.counts["cleared"] += 1

    def stats(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "alerts": dict(sorted(self.counts.items())),
            "accounts": {
                bot_id: {
                    "equity": round(self.equity(a), 2),
                    "peak": round(a.peak or 0.0, 2),
                    "exposure": round(self.exposure(a), 2),
                    "lossStreak": a.streak,
                    "fills": a.fills,
                    "blocked": a.block.kind if a.block else None,
                }
                for bot_id, a in sorted(self.accounts.items())
            },
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [RiskGuard]
