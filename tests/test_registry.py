"""The bot registry: the seed's 19 bots, the wiring rules, data-file validation and extension."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from citarion_host.registry import (
    BotInfo,
    BotRegistry,
    Category,
    RegistryError,
    UnknownBotError,
    load_registry,
)
from citarion_host.topics import TopicError

# The seed's "Bot Classification" tables; the "Integration & Analytics (4)" table is split as in the
# architecture diagram: ORA, LUM, WLF integration, LOG analytics.
SEED_BOTS = {
    "GRD": ("MESH", "operational"),
    "DCA": ("SCALE", "operational"),
    "BBB": ("BAND", "operational"),
    "RNG": ("EDGE", "operational"),
    "PND": ("Argus", "operational"),
    "FCS": ("Vision", "operational"),
    "ARB": ("Orion", "institutional"),
    "PAR": ("Spectrum", "institutional"),
    "STA": ("Reed", "institutional"),
    "MMK": ("Architect", "institutional"),
    "MRB": ("Equilibrist", "institutional"),
    "TRF": ("Kron", "institutional"),
    "HFT": ("Helios", "frequency"),
    "MFT": ("Selene", "frequency"),
    "LFT": ("Atlas", "frequency"),
    "ORA": ("Oracle", "integration"),
    "LUM": ("Lumi", "integration"),
    "WLF": ("Wolf", "integration"),
    "LOG": ("LOGOS", "analytics"),
}
TRADING_CATEGORIES = ("operational", "institutional", "frequency")


@pytest.fixture
def registry() -> BotRegistry:
    return load_registry()


# -- the 19 bots -------------------------------------------------------------------------------


def test_exactly_the_seeds_19_bots(registry: BotRegistry) -> None:
    assert len(registry) == 19
    assert registry.codes == tuple(SEED_BOTS)  # file order = seed order
    assert {bot.code: (bot.name, bot.category) for bot in registry} == SEED_BOTS
    assert all(bot.kind == "bot" for bot in registry)


def test_category_sizes(registry: BotRegistry) -> None:
    sizes = {c.id: len(registry.by_category(c.id)) for c in registry.categories}
    assert sizes == {
        "operational": 6,
        "institutional": 6,
        "frequency": 3,
        "integration": 3,
        "analytics": 1,
        "service": 2,
    }
    assert [b.code for b in registry.by_category("analytics")] == ["LOG"]
    assert [b.code for b in registry.by_category("integration")] == ["ORA", "LUM", "WLF"]


def test_descriptions_and_holding_periods(registry: BotRegistry) -> None:
    assert registry.get("PND").description == "Pump & Dump Detection"
    assert registry.get("LOG").description == "Meta-Analyst & Autonomous Trader"
    assert registry.get("HFT").holding_period == "seconds-minutes"
    assert registry.get("MFT").holding_period == "15min-4hours"
    assert registry.get("LFT").holding_period == "days-weeks"
    assert {b.code for b in registry if b.holding_period is not None} == {"HFT", "MFT", "LFT"}
    assert all(bot.description for bot in registry)


def test_services_are_not_known_bots(registry: BotRegistry) -> None:
    assert [s.code for s in registry.services] == ["EXC", "RSK"]
    assert all(s.kind == "service" and s.category == "service" for s in registry.services)
    assert "EXC" not in registry and "RSK" not in registry
    assert "EXC" not in registry.codes
    assert registry.service("EXC").name == "Paper Exchange"
    assert registry.entry("RSK").name == "Risk Guard"
    with pytest.raises(UnknownBotError, match=r"'EXC' \(Paper Exchange\) is a service.*service\(\)"):
        registry.get("EXC")
    with pytest.raises(UnknownBotError, match="is a bot"):
        registry.service("GRD")


def test_lookups(registry: BotRegistry) -> None:
    assert "GRD" in registry and "grd" not in registry and 42 not in registry
    assert registry.get("LOG").name == "LOGOS"
    assert registry.category("integration").name == "Integration Bots"
    assert registry.category("service").kind == "service"
    with pytest.raises(RegistryError, match=r"unknown category 'trading'.*operational"):
        registry.by_category("trading")


@pytest.mark.parametrize(
    ("asked", "suggested"),
    [("GDR", "GRD"), ("grd", "GRD"), ("LOGOS", "LOG"), ("Argus", "PND"), ("HTF", "HFT")],
)
def test_unknown_code_lists_codes_and_suggests(registry: BotRegistry, asked: str, suggested: str) -> None:
    with pytest.raises(UnknownBotError) as caught:
        registry.get(asked)
    error = caught.value
    assert error.code == asked and error.suggestion == suggested
    assert isinstance(error, LookupError) and isinstance(error, RegistryError)
    message = str(error)
    assert f"unknown bot code {asked!r}" in message and f"did you mean {suggested!r}" in message
    assert "known bot codes: ARB, BBB, DCA" in message and "WLF" in message
    assert "EXC" not in message  # services are not offered as bots


def test_unknown_code_without_a_close_match(registry: BotRegistry) -> None:
    with pytest.raises(UnknownBotError) as caught:
        registry.allowed_publish("QQQQ")
    assert caught.value.suggestion is None
    assert "did you mean" not in str(caught.value)
    assert "known bot or service codes:" in str(caught.value) and "EXC" in str(caught.value)


# -- wiring rules ------------------------------------------------------------------------------


def test_trading_categories_share_one_rule_set(registry: BotRegistry) -> None:
    rules = {(registry.category(c).publish, registry.category(c).subscribe) for c in TRADING_CATEGORIES}
    assert rules == {
        (
            ("trading.signal.>", "trading.order.>"),
            ("market.>", "risk.>", "trading.order.>", "trading.position.>"),
        )
    }


def test_integration_and_service_categories_grant_nothing_by_themselves(registry: BotRegistry) -> None:
    for category_id in ("integration", "service"):
        category = registry.category(category_id)
        assert category.publish == () and category.subscribe == ()
        assert category.why


@pytest.mark.parametrize(
    ("code", "pattern", "allowed"),
    [
        ("GRD", "trading.signal.generated", True),
        ("GRD", "trading.order.>", True),
        ("GRD", "trading.order.submitted", True),
        ("GRD", "market.ticker.updated", False),
        ("GRD", "trading.>", False),  # wider than what GRD holds
        ("GRD", "trading.*.generated", False),  # would include trading.position.generated
        ("GRD", "trading.position.updated", False),  # positions come from the exchange
        ("GRD", "risk.alert.triggered", False),
        ("GRD", "analytics.decision.made", False),
        ("PND", "risk.alert.triggered", True),  # the per-bot exception
        ("PND", "risk.limit.breached", False),
        ("HFT", "trading.signal.generated", True),
        ("LUM", "market.ticker.updated.binance.BTCUSDT", True),
        ("LUM", "market.candle.closed.*", True),
        ("LUM", "trading.signal.generated", False),
        ("ORA", "analytics.insight.published", True),
        ("ORA", "trading.order.submitted", False),
        ("WLF", "system.alert.raised", True),
        ("WLF", "risk.alert.triggered", False),
        ("LOG", "analytics.decision.made", True),
        ("LOG", "trading.order.submitted", True),
        ("LOG", "trading.signal.generated", True),
        ("LOG", "market.ticker.updated", False),
        ("EXC", "trading.order.filled", True),
        ("EXC", "trading.position.updated", True),
        ("EXC", "risk.alert.triggered", False),
        ("RSK", "risk.alert.triggered", True),
        ("RSK", "trading.order.submitted", False),
    ],
)
def test_may_publish(registry: BotRegistry, code: str, pattern: str, allowed: bool) -> None:
    assert registry.may_publish(code, pattern) is allowed


@pytest.mark.parametrize(
    ("code", "pattern", "allowed"),
    [
        ("GRD", "market.ticker.updated.binance.BTCUSDT", True),
        ("GRD", "market.*.updated", True),
        ("GRD", "risk.alert.triggered", True),
        ("GRD", "trading.order.filled", True),
        ("GRD", "trading.position.updated", True),
        ("GRD", "trading.signal.generated", False),  # strategies do not read each other's signals
        ("GRD", "system.bot.started", False),
        ("GRD", ">", False),
        ("ORA", ">", True),
        ("ORA", "system.deadletter.>", True),
        ("LUM", "market.ticker.updated", False),  # a pure source
        ("WLF", "risk.alert.triggered", True),
        ("WLF", "trading.>", True),
        ("WLF", "system.bot.failed", True),
        ("WLF", "market.ticker.updated", False),
        ("LOG", "trading.signal.>", True),
        ("LOG", "market.candle.closed.*", True),
        ("LOG", "system.bot.stopped", True),
        ("LOG", "system.deadletter.>", False),
        ("EXC", "trading.order.submitted", True),
        ("EXC", "market.orderbook.updated", True),
        ("EXC", "risk.block.set", True),  # the exchange enforces the risk guard's blocks
        ("EXC", "system.bot.started", False),
        ("RSK", "trading.position.updated", True),
        ("RSK", "market.ticker.updated", True),
    ],
)
def test_may_subscribe(registry: BotRegistry, code: str, pattern: str, allowed: bool) -> None:
    assert registry.may_subscribe(code, pattern) is allowed


def test_no_bot_publishes_lifecycle_events(registry: BotRegistry) -> None:
    # The host publishes system.bot.* on the bots' behalf.
    for bot in registry:
        assert not registry.may_publish(bot.code, "system.bot.started"), bot.code


def test_only_the_analysts_publish_analytics(registry: BotRegistry) -> None:
    publishers = {b.code for b in registry if registry.may_publish(b.code, "analytics.decision.made")}
    assert publishers == {"LOG", "ORA"}


def test_only_pnd_among_strategies_raises_risk_alerts(registry: BotRegistry) -> None:
    raisers = {b.code for b in registry if registry.may_publish(b.code, "risk.alert.triggered")}
    assert raisers == {"PND"}
    assert registry.may_publish("RSK", "risk.alert.triggered")


def test_the_platform_flow_is_wired_end_to_end(registry: BotRegistry) -> None:
    # market data -> strategies -> signals -> LOGOS -> orders -> paper exchange -> positions
    # -> risk guard -> alerts -> strategies and the alert system
    hops = [
        ("LUM", "market.ticker.updated.binance.BTCUSDT", "GRD"),
        ("GRD", "trading.signal.generated", "LOG"),
        ("LOG", "trading.order.submitted", "EXC"),
        ("EXC", "trading.order.filled", "LOG"),
        ("EXC", "trading.position.updated", "RSK"),
        ("RSK", "risk.alert.triggered", "GRD"),
        ("RSK", "risk.alert.triggered", "WLF"),
        ("LOG", "analytics.decision.made", "ORA"),
    ]
    for publisher, topic, subscriber in hops:
        assert registry.may_publish(publisher, topic), (publisher, topic)
        assert registry.may_subscribe(subscriber, topic), (subscriber, topic)


def test_effective_rules_are_category_plus_extras(registry: BotRegistry) -> None:
    pnd = registry.get("PND")
    assert pnd.extra_publish == ("risk.alert.>",)
    assert registry.allowed_publish("PND") == ("trading.signal.>", "trading.order.>", "risk.alert.>")
    assert registry.allowed_subscribe("PND") == registry.category("operational").subscribe
    assert registry.allowed_publish("LUM") == ("market.>",) and registry.allowed_subscribe("LUM") == ()
    assert registry.allowed_subscribe("ORA") == (">",)
    assert registry.allowed_publish("LOG") == ("analytics.>", "trading.signal.>", "trading.order.>")


def test_malformed_pattern_in_a_check_raises(registry: BotRegistry) -> None:
    with pytest.raises(TopicError):
        registry.may_publish("GRD", "trading..order")


# -- export and packaging ----------------------------------------------------------------------


def test_json_listing(registry: BotRegistry) -> None:
    listing = json.loads(registry.as_json())
    assert [b["code"] for b in listing["bots"]] == list(SEED_BOTS)
    assert [s["code"] for s in listing["services"]] == ["EXC", "RSK"]
    assert [c["id"] for c in listing["categories"]] == [
        "operational",
        "institutional",
        "frequency",
        "integration",
        "analytics",
        "service",
    ]
    pnd = next(b for b in listing["bots"] if b["code"] == "PND")
    assert pnd["publish"] == ["trading.signal.>", "trading.order.>", "risk.alert.>"]
    assert registry.to_dict()["bots"][0]["name"] == "MESH"


def test_data_file_is_packaged_and_explicit_path_loads_the_same() -> None:
    resource = resources.files("citarion_host") / "data" / "registry.toml"
    assert resource.is_file()
    with resources.as_file(resource) as path:
        assert load_registry(path).to_dict() == load_registry().to_dict()


def test_each_load_is_independent() -> None:
    first = load_registry()
    first.extend_rules(bot="GRD", publish=["analytics.grid.>"])
    assert not load_registry().may_publish("GRD", "analytics.grid.levels")


# -- data-file validation ----------------------------------------------------------------------

GOOD_CATEGORY = """
[categories.operational]
name = "Operational Bots"
publish = ["trading.signal.>"]
subscribe = ["market.>"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad_registry.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            GOOD_CATEGORY + '[[bots]]\ncode = "GRD"\nname = "MESH"\ncategory = "operationl"\n',
            ["bots[0]", "'GRD'", "field 'category'", "unknown category 'operationl'", "operational"],
        ),
        (
            GOOD_CATEGORY
            + '[[bots]]\ncode = "GRD"\nname = "MESH"\ncategory = "operational"\n'
            + '[[bots]]\ncode = "GRD"\nname = "MESH"\ncategory = "operational"\n',
            ["bots[1]", "'GRD'", "field 'code'", "already registered"],
        ),
        (
            GOOD_CATEGORY
            + '[[bots]]\ncode = "PND"\nname = "Argus"\ncategory = "operational"\n'
            + 'extra_publish = ["risk.>.alert"]\n',
            ["'PND'", "field 'extra_publish'", "'>' must be the last token"],
        ),
        (
            GOOD_CATEGORY + '[[bots]]\ncode = "GRD"\ncategory = "operational"\n',
            ["'GRD'", "field 'name'", "non-empty string"],
        ),
        (
            GOOD_CATEGORY
            + '[[bots]]\ncode = "GRD"\nname = "MESH"\ncategory = "operational"\nholding = "1d"\n',
            ["bots[0]", "field 'holding'", "unknown key", "holding_period"],
        ),
        (
            GOOD_CATEGORY + '[[bots]]\ncode = "grd"\nname = "MESH"\ncategory = "operational"\n',
            ["'grd'", "field 'code'", "must match"],
        ),
        (
            GOOD_CATEGORY + '[[services]]\ncode = "EXC"\nname = "Paper Exchange"\ncategory = "operational"\n',
            ["services[0]", "'EXC'", "field 'kind'", "service"],
        ),
        (
            GOOD_CATEGORY + '[[bots]]\ncode = "GRD"\nname = "MESH"\ncategory = "operational"\n'
            'extra_subscribe = "market.>"\n',
            ["'GRD'", "field 'extra_subscribe'", "list of pattern strings"],
        ),
        (
            '[categories.operational]\nname = "Ops"\npublish = ["trading. signal"]\n',
            ["category 'operational'", "field 'publish'", "whitespace"],
        ),
        (
            '[categories.operational]\npublish = ["trading.>"]\n',
            ["category 'operational'", "field 'name'"],
        ),
        (
            '[categories.operational]\nname = "Ops"\nkind = "robot"\n',
            ["category 'operational'", "field 'kind'", "'robot'"],
        ),
        (
            '[categories.operational]\nname = "Ops"\nwhy = 3\n',
            ["category 'operational'", "field 'why'", "must be a string"],
        ),
        ('[[bots]\ncode = "GRD"\n', ["invalid TOML"]),
        ("bot = []\n", ["field 'bot'", "unknown key"]),
    ],
)
def test_data_file_errors_name_file_entry_and_field(tmp_path: Path, body: str, expected: list[str]) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"nope\.toml: cannot read"):
        load_registry(tmp_path / "nope.toml")


# -- extension ---------------------------------------------------------------------------------


def test_register_a_plugin_bot(registry: BotRegistry) -> None:
    info = registry.register(
        BotInfo(code="SNT", name="Sentinel", category="operational", extra_subscribe=("analytics.>",))
    )
    assert info.publish == ("trading.signal.>", "trading.order.>")
    assert info.subscribe[-1] == "analytics.>"
    assert len(registry) == 20 and "SNT" in registry and registry.get("SNT") == info
    assert registry.may_subscribe("SNT", "analytics.decision.made")
    assert registry.register(info) is registry.get("SNT")  # identical again: no-op
    assert (
        registry.register(
            BotInfo(code="SNT", name="Sentinel", category="operational", extra_subscribe=("analytics.>",))
        )
        == info
    )


def test_register_rejects_conflicts_and_bad_fields(registry: BotRegistry) -> None:
    with pytest.raises(RegistryError, match=r"bot 'GRD': field 'code': 'GRD' is already registered \(MESH\)"):
        registry.register(BotInfo(code="GRD", name="Other", category="operational"))
    with pytest.raises(RegistryError, match=r"bot 'NEW': field 'category': unknown category 'nope'"):
        registry.register(BotInfo(code="NEW", name="New", category="nope"))
    with pytest.raises(RegistryError, match=r"bot 'NEW': field 'extra_publish': .*empty token"):
        registry.register(BotInfo(code="NEW", name="New", category="operational", extra_publish=("a..b",)))
    with pytest.raises(RegistryError, match=r"bot 'NEW': field 'publish': is derived.*extra_publish"):
        registry.register(BotInfo(code="NEW", name="New", category="operational", publish=("market.>",)))
    with pytest.raises(RegistryError, match=r"bot 'NEW': field 'kind'"):
        registry.register(BotInfo(code="NEW", name="New", category="service"))
    assert "NEW" not in registry and len(registry) == 19


def test_register_a_service(registry: BotRegistry) -> None:
    registry.register(
        BotInfo(code="REC", name="Recorder", category="service", kind="service", extra_subscribe=(">",))
    )
    assert len(registry) == 19
    assert [s.code for s in registry.services] == ["EXC", "RSK", "REC"]
    assert registry.may_subscribe("REC", "trading.order.filled")


def test_add_category_and_its_bots(registry: BotRegistry) -> None:
    sentiment = Category(
        id="sentiment",
        name="Sentiment Bots",
        publish=("analytics.sentiment.>",),
        subscribe=("market.>",),
        why="Read the market, publish mood",
    )
    assert registry.add_category(sentiment) == sentiment
    registry.add_category(sentiment)  # identical: no-op
    with pytest.raises(RegistryError, match=r"category 'sentiment': field 'id': .*already exists"):
        registry.add_category(Category(id="sentiment", name="Other"))
    with pytest.raises(RegistryError, match=r"field 'subscribe': .*'>' must be the last token"):
        registry.add_category(Category(id="broken", name="Broken", subscribe=(">.market",)))
    with pytest.raises(RegistryError, match="field 'id'"):
        registry.add_category(Category(id="Bad Id", name="Bad"))
    registry.register(BotInfo(code="MOOD", name="Mood", category="sentiment"))
    assert registry.may_publish("MOOD", "analytics.sentiment.scored")
    assert [b.code for b in registry.by_category("sentiment")] == ["MOOD"]


def test_extend_rules_for_a_category_reaches_its_bots(registry: BotRegistry) -> None:
    assert not registry.may_subscribe("ARB", "analytics.decision.made")
    registry.extend_rules(category="institutional", subscribe=["analytics.decision.>"])
    assert registry.category("institutional").subscribe[-1] == "analytics.decision.>"
    assert all(
        registry.may_subscribe(b.code, "analytics.decision.made")
        for b in registry.by_category("institutional")
    )
    assert not registry.may_subscribe("GRD", "analytics.decision.made")
    registry.extend_rules(category="institutional", subscribe=["analytics.decision.>"])  # idempotent
    assert registry.allowed_subscribe("ARB").count("analytics.decision.>") == 1


def test_extend_rules_for_one_bot_or_service(registry: BotRegistry) -> None:
    registry.extend_rules(bot="FCS", publish=["analytics.forecast.>"])
    assert registry.get("FCS").extra_publish == ("analytics.forecast.>",)
    assert registry.may_publish("FCS", "analytics.forecast.updated")
    assert not registry.may_publish("GRD", "analytics.forecast.updated")
    registry.extend_rules(bot="RSK", subscribe=["risk.alert.>"])
    assert registry.may_subscribe("RSK", "risk.alert.triggered")
    # a later category grant still applies on top of the bot's extras
    registry.extend_rules(category="operational", publish=["trading.note.>"])
    assert registry.allowed_publish("FCS")[-2:] == ("trading.note.>", "analytics.forecast.>")


def test_extend_rules_checks_everything_first(registry: BotRegistry) -> None:
    before = registry.to_dict()
    with pytest.raises(RegistryError, match="exactly one of"):
        registry.extend_rules(publish=["market.>"])
    with pytest.raises(RegistryError, match="exactly one of"):
        registry.extend_rules(category="operational", bot="GRD")
    with pytest.raises(RegistryError, match=r"category 'operational': field 'subscribe'"):
        registry.extend_rules(category="operational", publish=["ok.topic"], subscribe=["bad..pattern"])
    with pytest.raises(UnknownBotError, match="did you mean 'GRD'"):
        registry.extend_rules(bot="GDR", publish=["market.>"])
    with pytest.raises(RegistryError, match="unknown category"):
        registry.extend_rules(category="nope", publish=["market.>"])
    assert registry.to_dict() == before


def test_registry_built_in_code() -> None:
    ops = Category(id="ops", name="Ops", publish=("trading.>",))
    registry = BotRegistry([ops], [BotInfo(code="ONE", name="One", category="ops")])
    assert registry.codes == ("ONE",) and registry.allowed_publish("ONE") == ("trading.>",)
    assert registry.services == ()
