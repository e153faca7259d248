"""The permission model of ``natsauth``, without a server: known answers for a small topology, and the
topologies it must refuse. ``test_natsauth_server.py`` has the server enforce the same grants."""

from __future__ import annotations

import re

import pytest

from citarion_host.errors import ConfigError
from citarion_host.natsauth import (
    HOST_USER,
    bot_consumer,
    bot_grant,
    consumer_name,
    grants,
    host_grant,
    inbox_prefix,
    reply_prefix,
)
from citarion_host.settings import BotConfig


def bot(bot_id: str, publish: list[str], subscribe: list[str], queue: str | None = None) -> BotConfig:
    return BotConfig(id=bot_id, code="X", plugin="p", publish=publish, subscribe=subscribe, queue=queue)


FEED = bot("feed", ["market.>"], [])
GRID = bot("grid", ["trading.signal.>"], ["market.candle.>", "risk.>"])
RISK = bot("risk", ["risk.block.>"], ["trading.signal.*"])


def test_a_bot_may_use_exactly_its_patterns_its_inboxes_and_its_consumer() -> None:
    grant = bot_grant(GRID, [FEED, GRID, RISK], "ev")
    assert list(grant.publish) == [
        "trading.signal.>",
        "_CIT.responders.trading.signal.>",
        "_INBOX.grid.>",
        "_CIT.reply.feed.>",  # feed publishes market.>, which grid receives: it may answer feed
        "_CIT.reply.risk.>",  # risk publishes risk.block.>, grid subscribes risk.>
        "$JS.ACK.ev.grid.>",
        "$JS.API.CONSUMER.INFO.ev.grid",
        "$JS.API.CONSUMER.PAUSE.ev.grid",
        "$JS.API.STREAM.INFO.ev",
    ]
    assert list(grant.subscribe) == [
        "market.candle.>",
        "risk.>",
        "_CIT.responders.market.candle.>",
        "_CIT.responders.risk.>",
        "_INBOX.grid.>",
        "_CIT.reply.grid.>",
        "_CIT.deliver.ev.grid",
    ]
    assert all(grant.publish.values()) and all(grant.subscribe.values()), "every subject says why"


def test_a_bot_that_subscribes_to_nothing_has_no_consumer_and_answers_nobody() -> None:
    grant = bot_grant(FEED, [FEED, GRID, RISK], "ev")
    assert bot_consumer(FEED, "ev") is None
    assert list(grant.publish) == [
        "market.>",
        "_CIT.responders.market.>",
        "_INBOX.feed.>",
        "$JS.API.STREAM.INFO.ev",
    ]
    assert list(grant.subscribe) == ["_INBOX.feed.>", "_CIT.reply.feed.>"]


def test_the_consumer_is_named_after_the_queue_group_else_the_bot() -> None:
    member = bot("grid-2", ["trading.signal.>"], ["market.candle.>", "market.candle.>"], queue="grids")
    assert consumer_name(GRID) == "grid" and consumer_name(member) == "grids"
    consumer = bot_consumer(member, "ev")
    assert consumer is not None
    assert (consumer.name, consumer.deliver_subject, consumer.queue) == (
        "grids",
        "_CIT.deliver.ev.grids",
        "grids",
    )
    assert consumer.filter_subjects == ("market.candle.>",)
    assert inbox_prefix("grid") == "_INBOX.grid" and reply_prefix("grid") == "_CIT.reply.grid"


def test_the_host_user_comes_first_and_may_use_everything() -> None:
    users = grants([FEED, GRID, RISK], "ev")
    assert [g.user for g in users] == [HOST_USER, "feed", "grid", "risk"]
    assert users[0] == host_grant() and list(users[0].publish) == [">"] and list(users[0].subscribe) == [">"]


@pytest.mark.parametrize(
    ("bots", "message"),
    [
        (
            [bot("a", [], ["market.>"], queue="q"), bot("b", [], ["risk.>"], queue="q")],
            r"bot 'b': queue group 'q' shares one consumer with bot 'a', but subscribes \['risk\.>'\]",
        ),
        (
            [bot("a", [], ["market.>"]), bot("b", [], ["market.>"], queue="a")],
            r"bot 'b': consumer 'a' would be shared with bot 'a' \(a queue group named like a bot id\)",
        ),
        ([bot("a", [], ["market.>"], queue="q.1")], r"bot 'a': queue group 'q\.1' may only contain"),
        ([bot("a", [], []), bot("a", ["risk.>"], [])], r"bot id 'a' appears 2 times: one NATS user each"),
    ],
)
def test_topologies_that_cannot_be_confined_are_refused(bots: list[BotConfig], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        grants(bots, "ev")
    assert any(re.search(message, problem) for problem in refused.value.problems), refused.value.problems


def test_queue_group_members_with_the_same_patterns_share_one_consumer() -> None:
    members = [bot(f"w{i}", [], ["market.>", "risk.>"][:: 1 if i else -1], queue="workers") for i in range(2)]
    users = grants(members, "ev")
    assert {g.user for g in users} == {HOST_USER, "w0", "w1"}
    assert all("_CIT.deliver.ev.workers" in g.subscribe for g in users[1:])
