"""The AsyncAPI 3.0 document, validated against the official JSON Schema of the AsyncAPI initiative
as published in npm's ``@asyncapi/specs`` (``make test`` installs it; never copied into the repo)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from citarion_host.cli import main
from citarion_host.settings import load_config
from citarion_host.ui.asyncapi import asyncapi_document, channel_id

from .conftest import Served

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(
    os.environ.get(
        "CITARION_ASYNCAPI_SCHEMA",
        REPO / ".venv" / "npm" / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0.json",
    )
)


@pytest.fixture(scope="module")
def validator() -> Any:
    assert SCHEMA.is_file(), (
        f"{SCHEMA}: missing; `make test` installs npm's @asyncapi/specs (or set CITARION_ASYNCAPI_SCHEMA)"
    )
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    return jsonschema.validators.validator_for(schema)(schema)


def errors(validator: Any, document: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("config", ["dev.toml", "prod.toml"])
def test_the_document_of_each_shipped_config_is_valid(validator: Any, config: str) -> None:
    loaded = load_config(REPO / "configs" / config, environ={})
    document = asyncapi_document(loaded.config)
    assert errors(validator, document) == []
    assert document["asyncapi"] == "3.0.0"
    bots = [bot for bot in loaded.config.bots if bot.enabled]
    for bot in bots:
        for index, pattern in enumerate(dict.fromkeys(bot.publish)):
            operation = document["operations"][f"{bot.id}_send_{index}"]
            assert operation["action"] == "send"
            assert operation["channel"] == {"$ref": f"#/channels/{channel_id(pattern)}"}
            assert document["channels"][channel_id(pattern)]["address"] == pattern
    assert {s["protocol"] for s in document["servers"].values()} == {"nats", "memory"}


def test_message_schemas_come_from_the_payload_types(validator: Any) -> None:
    document = asyncapi_document(load_config(REPO / "configs" / "dev.toml", environ={}).config)
    market = document["channels"]["market_all"]["messages"]
    assert {"Event_Candle", "Event_Ticker", "Event_Trade", "Event_OrderBook"} <= set(market)
    signal = document["components"]["schemas"]["Signal"]
    assert {"symbol", "exchange", "direction", "confidence"} <= set(signal["required"])
    assert document["components"]["schemas"]["Event_Signal_"]["properties"]["payload"] == {
        "$ref": "#/components/schemas/Signal"
    }


def test_the_validator_can_fail(validator: Any) -> None:
    document = asyncapi_document(load_config(REPO / "configs" / "dev.toml", environ={}).config)
    document["operations"]["mesh_send_0"]["action"] = "publish"  # AsyncAPI 2's word, not 3's
    del document["servers"]["memory"]["protocol"]
    assert len(errors(validator, document)) == 2


def test_the_cli_writes_it_and_the_dashboard_serves_the_same(
    validator: Any, tmp_path: Path, quiet: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "asyncapi.json"
    assert main(["asyncapi", "--config", str(quiet.host.loaded.path), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert errors(validator, written) == []
    assert "scout_receive_1" in written["operations"]


async def test_served_at_asyncapi_json(validator: Any, quiet: Served) -> None:
    async with quiet.client() as client:
        served = (await client.get("/asyncapi.json")).json()
    assert errors(validator, served) == []
    assert served["info"]["title"] == "CITARION event bus: ui-test"
