"""The distribution: one entry point per bot module, each a pluggy plugin returning its bot types."""

from __future__ import annotations

from importlib.metadata import entry_points

import pluggy

from citarion_host import hookspecs
from citarion_host.bot import Bot

EXPECTED = {
    "lumi": {"lumi-synthetic", "lumi-csv", "lumi-market"},
    "exchange": {"paper-exchange"},
    "grid": {"grid"},
    "dca": {"dca"},
    "bollinger": {"bollinger"},
    "range": {"range"},
    "pump": {"pump-dump"},
    "forecast": {"forecast"},
    "logos": {"logos"},
    "risk": {"risk-guard"},
    "wolf": {"wolf"},
    "arbitrage": {"arbitrage"},
    "pairs": {"pairs"},
    "statarb": {"stat-arb"},
    "marketmaker": {"market-maker"},
    "basket": {"basket"},
    "transfer": {"transfer"},
    "hft": {"hft-imbalance"},
    "mft": {"mft-breakout"},
    "lft": {"lft-crossover"},
    "oracle": {"oracle"},
}


def test_every_bot_module_is_an_entry_point_plugin() -> None:
    found = {
        ep.name: ep for ep in entry_points(group="citarion.bots") if ep.value.startswith("citarion_bots.")
    }
    assert set(found) == set(EXPECTED)
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for name, ep in found.items():
        module = ep.load()
        manager.register(module, name=name)
        types = module.citarion_bot_types()
        assert {t.type_name for t in types} == EXPECTED[name], name
    all_types = [t for group in manager.hook.citarion_bot_types() for t in group]
    names = [t.type_name for t in all_types]
    assert len(names) == len(set(names)) == 23
    for bot_type in all_types:
        assert issubclass(bot_type, Bot) and bot_type.description
        bot_type.Params.model_validate({})  # every param has a default: an empty table is a valid config
