"""The example config on the real host: checked, run to ``stop_on``, books balanced at the end."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import tomli_w

from citarion_host.host import Host
from citarion_host.settings import load_config

EXAMPLE = Path(__file__).parents[2] / "configs" / "paper-trading.toml"


async def test_the_example_config_runs_on_the_host(tmp_path: Path) -> None:
    config = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for entry in config["bots"]:
        if entry["code"] == "LUM":
            entry["params"] |= {"bars": 150, "pumps": [{"symbol": "SOLUSDT", "start_bar": 100}]}
        if entry["code"] == "WLF":
            entry["params"] |= {"console": "off", "jsonl_path": str(tmp_path / "alerts.jsonl")}
    path = tmp_path / "demo.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    host = Host(load_config(path))
    async with host:
        await asyncio.wait_for(host.finished.wait(), timeout=30)
    stats = {bot_id: s.get("bot", {}) for bot_id, s in host.final_stats.items()}
    assert stats["lumi"]["completed"] is True and stats["lumi"]["bars"] == 150 * 6
    assert stats["exchange"]["balanced"] is True and stats["exchange"]["filled"] > 0
    assert {"mesh", "scale", "band", "edge"} <= set(stats["exchange"]["books"])
    assert all(
        s["signals"] > 0
        for bot_id, s in stats.items()
        if bot_id in ("mesh", "scale", "band", "edge", "argus")
    )
    assert [d["series"] for d in stats["argus"]["detections"]] == ["binance:SOLUSDT", "bybit:SOLUSDT"]
    assert stats["logos"]["decisions"] > 0
    assert stats["wolf"]["delivered"] > 0 and (tmp_path / "alerts.jsonl").read_text(encoding="utf-8")
    assert all(s.get("errors", 0) == 0 for s in host.final_stats.values())
