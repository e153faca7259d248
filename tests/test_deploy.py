"""The deployment files in deploy/: what ``nats-config`` writes for configs/prod.toml (never stale), every
``deploy/*.conf`` accepted by the real ``nats-server -t``, and systemd units that systemd accepts.

The committed public keys belong to seeds that were never committed (``secrets/`` is git-ignored): the
files are an example to read and to regenerate (docs/deploy.md), not credentials.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from citarion_host.cli import main
from citarion_host.natsconf import check_with_server
from citarion_host.natsserver import NatsCluster, NatsServer, find_nats_server

from .test_natsconf import free_port_block

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMMAND = ["nats-config", "--config", "configs/prod.toml", "--cluster", "3", "--out"]  # as in docs/deploy.md
CONFS = sorted(DEPLOY.glob("*.conf"))


def masked(text: str) -> str:
    """Without what differs from one generation to the next: the keys, and the include's path."""
    text = re.sub(r'nkey: "U[A-Z0-9]+"', 'nkey: "U..."', text)
    return re.sub(r"include = \[[^\]]*\]", "include = [...]", text)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/ generated afresh (with secrets) by the command docs/deploy.md gives."""
    out = tmp_path_factory.mktemp("deploy")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        assert main([*COMMAND, str(out)]) == 0
    return out


def test_deploy_has_the_cluster_example_and_the_systemd_units() -> None:
    assert [p.name for p in CONFS] == ["citarion-auth.conf", "nats-1.conf", "nats-2.conf", "nats-3.conf"]
    assert (DEPLOY / "citarion-host.toml").is_file()
    assert sorted(p.name for p in (DEPLOY / "systemd").iterdir()) == [
        "citarion-host@.service",
        "nats-server@.service",
    ]
    assert not (DEPLOY / "secrets").exists() or not _tracked(DEPLOY / "secrets"), (
        "secrets are never committed"
    )


def _tracked(path: Path) -> bool:
    result = subprocess.run(
        ["git", "ls-files", str(path)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return bool(result.stdout.strip())


@pytest.mark.parametrize(
    "name", ["citarion-auth.conf", "nats-1.conf", "nats-2.conf", "nats-3.conf", "citarion-host.toml"]
)
def test_the_committed_files_are_what_nats_config_writes_for_prod_toml(generated: Path, name: str) -> None:
    assert masked((DEPLOY / name).read_text()) == masked((generated / name).read_text()), (
        f"deploy/{name} is stale: regenerate it with `citarion-host {' '.join(COMMAND)} deploy`"
    )


@pytest.mark.parametrize("conf", CONFS, ids=[p.name for p in CONFS])
def test_every_committed_conf_is_accepted_by_nats_server(generated: Path, tmp_path: Path, conf: Path) -> None:
    """Checked where it would run: next to citarion-auth.conf and the secrets/ it includes."""
    shutil.copytree(generated, tmp_path, dirs_exist_ok=True)
    for committed in CONFS:
        shutil.copy(committed, tmp_path / committed.name)
    check_with_server(tmp_path / conf.name)


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / name)
    return parser


def test_the_units_run_the_generated_files() -> None:
    nats = unit("nats-server@.service")["Service"]
    assert nats["ExecStart"].endswith("nats-server -c /etc/citarion/nats-%i.conf")
    assert nats["StateDirectory"] == "citarion-nats"  # the configs' store_dir root, /var/lib/citarion-nats
    assert "/var/lib/citarion-nats/citarion-1" in (DEPLOY / "nats-1.conf").read_text()
    host = unit("citarion-host@.service")["Service"]
    assert (
        "citarion-host run --config /etc/citarion/citarion-host.toml $CITARION_RUN_ARGS" in host["ExecStart"]
    )
    assert host["LoadCredential"] == "host.nk:/etc/citarion/secrets/host.nk"
    assert host["Environment"] == "CITARION_BACKEND__NATS__NKEYS_SEED=%d/host.nk"


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on instances of the units, with the binaries of this checkout."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # not every machine has systemd; the structural test above still runs
        pytest.skip("systemd-analyze is not installed")
    venv = Path(find_nats_server()).parent.parent
    for template, instance in (
        ("nats-server@.service", "nats-server@1.service"),
        ("citarion-host@.service", "citarion-host@a.service"),
    ):
        text = (DEPLOY / "systemd" / template).read_text()
        text = text.replace("/usr/local/bin/nats-server", find_nats_server()).replace(
            "/opt/citarion/.venv", str(venv)
        )
        (tmp_path / instance).write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", "nats-server@1.service", "citarion-host@a.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@pytest.mark.slow
def test_the_walkthrough_on_loopback_with_one_host(tmp_path: Path) -> None:
    """docs/deploy.md steps 1-3 on loopback: generate a 3-node cluster, start the three servers from the
    generated files, run the platform with the generated host config and the host user's seed. (The
    step with three hosts each running a third of the topology needs ``run --only``.)"""
    base = free_port_block(9)
    out = tmp_path / "deploy"
    ports = ["--port", str(base), "--monitor-port", str(base + 3), "--route-port", str(base + 6)]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        assert main([*COMMAND, str(out), *ports, "--store-dir", str(tmp_path / "store")]) == 0
    servers = [
        NatsServer.from_config(out / f"nats-{i}.conf", port=base + i - 1, monitor_port=base + 2 + i)
        for i in (1, 2, 3)
    ]
    summary_file = tmp_path / "summary.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CITARION_BACKEND__NATS__NKEYS_SEED": str(out / "secrets" / "host.nk"),
        "CITARION_HOST__PROGRESS_INTERVAL_S": "0",
    }
    with NatsCluster.of(servers, name="citarion"):
        done = subprocess.run(
            [sys.executable, "-m", "citarion_host.cli", "run", "--config", str(out / "citarion-host.toml"),
             "--summary-json", str(summary_file)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        stream = servers[0].monitor("jsz?accounts=true&streams=true&config=true")
    summary = json.loads(summary_file.read_text())
    rows = {row["bot"]: row for row in summary["bots"]}
    assert summary["events"] > 8_000 and all(
        row["errors"] == 0 for row in rows.values()
    )  # ~9,350 since positions go out on fills
    assert rows["lumi"]["stats"]["completed"] is True and rows["exchange"]["stats"]["balanced"] is True
    details = [s for account in stream["account_details"] for s in account.get("stream_detail", [])]
    assert sorted((s["name"], s["config"]["num_replicas"]) for s in details) == [
        ("KV_citarion-state", 3),  # the bot-state bucket (docs/state.md) follows replicas too
        ("citarion-events", 3),
    ]
    events = next(s for s in details if s["name"] == "citarion-events")
    assert events["state"]["messages"] >= summary["events"], "every event of the run is stored (3 replicas)"


@pytest.mark.slow
def test_the_walkthrough_with_three_hosts(tmp_path: Path) -> None:
    """docs/deploy.md step 3, three hosts: a 3-node cluster from the generated files, three host
    processes each running a third of prod.toml's topology (--only), started together in any order:
    the feed's host orders the run (``split.py``). Then the same config as one process on the same
    cluster (the split run's stream and states deleted first): every bot's figures are the same."""
    import asyncio

    import nats

    base = free_port_block(9)
    out = tmp_path / "deploy"
    ports = ["--port", str(base), "--monitor-port", str(base + 3), "--route-port", str(base + 6)]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        assert main([*COMMAND, str(out), *ports, "--store-dir", str(tmp_path / "store")]) == 0
    servers = [
        NatsServer.from_config(out / f"nats-{i}.conf", port=base + i - 1, monitor_port=base + 2 + i)
        for i in (1, 2, 3)
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CITARION_BACKEND__NATS__NKEYS_SEED": str(out / "secrets" / "host.nk"),
        "CITARION_HOST__PROGRESS_INTERVAL_S": "0",
    }

    async def drop_the_run(url: str, seed: str) -> None:
        """The split run's stream and states deleted: the one-process run starts from nothing too."""
        nc = await nats.connect(url, nkeys_seed_str=seed)
        try:
            await nc.jsm().delete_stream("citarion-events")
            await nc.jsm().delete_stream("KV_citarion-state")
        finally:
            await nc.close()

    thirds = {"feed": "logos,lumi", "services": "exchange,risk,wolf",
              "strategies": "argus,mesh,scale,band,edge,vision", "one": None}  # fmt: skip

    def host(name: str, extra: dict[str, str] | None = None) -> subprocess.Popen[str]:
        directory = tmp_path / name
        directory.mkdir()
        only = ["--only", thirds[name]] if thirds[name] else []
        with open(directory / "stdout", "w") as stdout, open(directory / "stderr", "w") as stderr:
            # files, not pipes: a host blocked on a full pipe nobody reads yet would stall the run
            return subprocess.Popen(
                [sys.executable, "-m", "citarion_host.cli", "run", "--config", str(out / "citarion-host.toml"),
                 *only, "--summary-json", str(directory / "summary.json")],
                cwd=directory, env={**env, **(extra or {})}, stdout=stdout, stderr=stderr, text=True,
            )  # fmt: skip

    def run(names: list[str], extra: dict[str, str] | None = None) -> None:
        processes = [host(name, extra) for name in names]
        try:
            for name, process in zip(names, processes, strict=True):
                process.wait(timeout=600)
                assert process.returncode == 0, (tmp_path / name / "stderr").read_text()[-3000:]
        finally:
            for process in processes:  # a failed run leaves no host behind (nor a ResourceWarning later)
                if process.poll() is None:
                    process.kill()
                process.wait()

    with NatsCluster.of(servers, name="citarion"):
        run(["feed", "services", "strategies"])  # the feed's host first: it waits for the others
        asyncio.run(drop_the_run(servers[0].url, (out / "secrets" / "host.nk").read_text().strip()))
        run(["one"])
    summaries = {name: json.loads((tmp_path / name / "summary.json").read_text()) for name in thirds}
    rows = {row["bot"]: row for name in ("feed", "services", "strategies") for row in summaries[name]["bots"]}
    one = {row["bot"]: row for row in summaries["one"]["bots"]}
    assert set(rows) == set(one) >= {"exchange", "risk", "wolf", "argus", "mesh", "logos", "lumi"}
    assert rows["lumi"]["stats"]["completed"] is True, "the feed replayed every bar"
    assert rows["exchange"]["stats"]["balanced"] is True, "the books balance across the split"
    assert all(row["errors"] == 0 for row in rows.values())
    different = {
        bot: sorted(k for k in row if row[k] != rows[bot].get(k))
        for bot, row in one.items()
        if row != rows[bot]
    }
    assert different == {}, "three hosts give every bot the figures of one process"
    lines = (tmp_path / "services" / "runs" / "prod-events.jsonl").read_text().splitlines()
    record = [json.loads(line) for line in lines]
    ids = {event["id"] for event in record}
    fills = [event for event in record if event["topic"] == "trading.order.filled"]
    assert fills and all(fill["causationId"] in ids for fill in fills), "every fill's order is in the record"
