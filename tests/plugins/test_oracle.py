"""ORA: golden questions answered exactly on the seeded platform run, held-out paraphrases routed to the
right intent, out-of-scope questions refused, ``citarion-host ask`` on a record and on a live NATS host.

The golden answers (``data/oracle_golden.jsonl``) name events by their position in the run's record
(``#123``), since ids differ run to run; the run is the same every time (same seed, deterministic mode).
They are also checked against the run's own summary where the summary has the figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from citarion_bots.oracle.bot import OracleBot
from citarion_bots.oracle.matchers import FuzzyMatcher
from citarion_bots.oracle.measure import HELDOUT, bot_names, evaluate
from citarion_bots.oracle.router import Router

from citarion_host.ask import ask_record
from citarion_host.cli import main
from citarion_host.natsserver import NatsServer
from citarion_host.payloads import Answer
from citarion_host.settings import load_config

from .platform_run import PLATFORM, REPO, Run, run_platform

GOLDEN = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "oracle_golden.jsonl").read_text().splitlines()
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_platform(tmp_path_factory.mktemp("oracle"))


def ask(run: Run, question: str) -> Answer:
    return asyncio.run(ask_record(load_config(PLATFORM), question, run["record_path"]))


def neutral(run: Run, answer: Answer) -> str:
    position = {event["id"]: n for n, event in enumerate(run["recorded"])}
    text = answer.text
    for event_id in answer.event_ids:
        text = text.replace(event_id, f"#{position[event_id]}")
    return text


def test_at_least_20_golden_questions_are_answered_exactly(run: Run) -> None:
    assert sum(1 for g in GOLDEN if g["answered"]) >= 20
    ids = {event["id"] for event in run["recorded"]}
    for golden in GOLDEN:
        answer = ask(run, golden["question"])
        assert (answer.answered, answer.intent) == (golden["answered"], golden["intent"]), golden["question"]
        assert neutral(run, answer) == golden["answer"], golden["question"]
        assert set(answer.event_ids) <= ids and all(f"[{i}" in answer.text or f" {i}" in answer.text
                                                      for i in answer.event_ids), "cited, and in the text"  # fmt: skip


def test_the_answers_agree_with_the_runs_summary(run: Run) -> None:
    rows = {row["bot"]: row for row in run["bots"]}
    for bot_id in ("orion", "mesh", "logos", "helios"):
        text = ask(run, f"what is the pnl of {bot_id}?").text
        assert text.startswith(f"{bot_id}: PnL {rows[bot_id]['pnl']:+,.2f} "), (text, rows[bot_id]["pnl"])
    fills = ask(run, "how many fills did helios get?").text
    assert f" {rows['helios']['fills']} fills" in fills and f" {rows['helios']['orders']} orders" in fills
    blocked = rows["risk"]["stats"]["accounts"]
    now = sorted(bot for bot, account in blocked.items() if account["blocked"])
    text = ask(run, "which bots are blocked?").text
    assert text.startswith(f"{len(now)} blocked: ") and all(f"{bot} (" in text for bot in now)


def test_held_out_paraphrases_route_right_and_out_of_scope_questions_are_refused() -> None:
    heldout = tomllib.loads(HELDOUT.read_text(encoding="utf-8"))
    result = evaluate(Router(bot_names(heldout["roster"]), FuzzyMatcher()), heldout)
    assert result["paraphrases"] >= 60 and result["routed_share"] >= 0.90, result["misses"]
    assert result["refused"] == result["out_of_scope"] >= 20, result["accepted_out_of_scope"]


def test_a_question_naming_nothing_known_is_refused_with_suggestions() -> None:
    from citarion_host.testing import BotHarness

    harness = BotHarness(OracleBot, {}, bot_id="oracle", code="ORA")
    for question in (
        "why is it blocked right now?",
        "who publishes it?",
        "trace the order",
        "sell everything",
    ):
        answer = harness.bot.ask(question)  # type: ignore[attr-defined]
        if answer.answered:  # "why is it blocked" names no bot: it lists the blocked ones (none)
            assert answer.intent == "blocked_bots" and answer.text == "No bot is blocked."
        else:
            assert answer.text.startswith("I cannot answer that (") and 1 <= len(answer.suggestions) <= 3
            assert len(set(answer.suggestions)) == len(answer.suggestions)


def test_ask_from_the_shell_on_the_record(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    record = str(run["record_path"])
    assert main(["ask", "why is scale blocked?", "--config", str(PLATFORM), "--record", record]) == 0
    assert capsys.readouterr().out.startswith("scale is blocked by the risk guard (exposure)")
    assert main(["ask", "tell me a joke", "--config", str(PLATFORM), "--record", record, "--json"]) == 3
    refused = json.loads(capsys.readouterr().out)
    assert refused["answered"] is False and refused["suggestions"]
    assert main(["ask", "   ", "--config", str(PLATFORM)]) == 2
    assert (
        main(["ask", "what is the pnl of mesh?", "--config", str(PLATFORM), "--record", "/nonexistent"]) == 1
    )
    assert "no record at /nonexistent" in capsys.readouterr().err


LIVE = """
include = ["{platform}"]
[host]
stop_on = "system.never.happens"   # keep running: the test asks, then stops it
progress_interval_s = 0
summary = false
record = "live.jsonl"
[backend]
type = "nats"
[backend.nats]
servers = ["{server}"]
stream = "ask-live"
"""


def test_ask_from_the_shell_reaches_a_running_host_over_nats(nats_server: NatsServer, tmp_path: Path) -> None:
    """The platform on JetStream in its own process; ``citarion-host ask`` (this process) gets ORA's
    answers by request/reply while it runs: first until ORA has heard the feed complete, then a PnL."""
    config = tmp_path / "live.toml"
    config.write_text(LIVE.format(platform=PLATFORM, server=nats_server.url))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = (tmp_path / "host.log").open("w")  # a file, not a pipe: a full pipe would stall the host
    host = subprocess.Popen(
        [sys.executable, "-m", "citarion_host.cli", "--config", str(config)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip

    def ask_live(question: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["ask", question, "--config", str(config), "--json", "--timeout", "10"])
        return code, out.getvalue() or err.getvalue()

    try:
        deadline = time.monotonic() + 300
        while True:  # until ORA has heard the feed complete (it answers from the start: ask it)
            assert host.poll() is None, (tmp_path / "host.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the feed did not complete"
            code, said = ask_live("who publishes market.feed.completed?")
            if code == 0 and "seen from LUM" in said:
                break
            time.sleep(1)
        code, said = ask_live("what is the pnl of orion?")
        assert code == 0, said
        answer: dict[str, Any] = json.loads(said)
        assert answer["answered"] is True and answer["text"].startswith("orion: PnL ")
        assert answer["eventIds"] and all(len(i) == 36 for i in answer["eventIds"])
    finally:
        host.send_signal(signal.SIGTERM)
        host.wait(timeout=60)
        log.close()
