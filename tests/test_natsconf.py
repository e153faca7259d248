"""``citarion-host nats-config``: the files it writes, their modes, the secrets it keeps to itself, and a
real nats-server (and a 3-node cluster) accepting and running them."""

from __future__ import annotations

import asyncio
import re
import socket
import stat
from pathlib import Path

import nats
import pytest

from citarion_host.bus.nats import NatsBus
from citarion_host.cli import main
from citarion_host.natsconf import DeployOptions, check_with_server, plan_nodes
from citarion_host.natsserver import HOST, NatsCluster, NatsServer
from citarion_host.settings import load_config

ROOT = Path(__file__).resolve().parents[1]
PROD = ROOT / "configs" / "prod.toml"
PROD_BOTS = [bot.id for bot in load_config(PROD).config.bots]


def generate(out: Path, *extra: str) -> int:
    return main(
        ["nats-config", "--config", str(PROD), "--out", str(out), "--store-dir", str(out / "store"), *extra]
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def public_keys(path: Path) -> list[str]:
    return re.findall(r'nkey: "(U[A-Z0-9]+)"', path.read_text())


def test_one_server_one_user_per_bot_secrets_private_and_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deploy"
    assert generate(out) == 0
    printed = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        "citarion-auth.conf",
        "citarion-host.toml",
        "nats-server.conf",
        "secrets",
    ]
    secrets = out / "secrets"
    seeds = [secrets / "host.nk", *(secrets / "bots" / f"{b}.nk" for b in PROD_BOTS)]
    assert sorted((secrets / "bots").iterdir()) == sorted(seeds[1:])
    assert mode(secrets) == mode(secrets / "bots") == 0o700
    assert {mode(seed) for seed in seeds} == {0o600}
    assert len(set(public_keys(out / "citarion-auth.conf"))) == 1 + len(PROD_BOTS)
    for seed in seeds:
        text = seed.read_text().strip()
        assert text.startswith("SU") and len(text) == 58
        for where in (printed.out, printed.err, *(p.read_text() for p in out.glob("*.*") if p.is_file())):
            assert text not in where, f"the seed of {seed.name} leaked"
    assert "checked with nats-server -t: nats-server.conf" in printed.out


def test_seeds_are_reused_on_regeneration_and_replaced_on_rotate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deploy"
    assert generate(out) == 0
    first = public_keys(out / "citarion-auth.conf")
    assert generate(out) == 0
    assert public_keys(out / "citarion-auth.conf") == first
    assert f"0 seeds created, {len(first)} reused" in capsys.readouterr().out
    assert generate(out, "--rotate") == 0
    assert set(public_keys(out / "citarion-auth.conf")).isdisjoint(first)


def test_a_readable_seed_is_tightened_and_a_bad_one_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deploy"
    assert generate(out) == 0
    seed = out / "secrets" / "bots" / "mesh.nk"
    seed.chmod(0o644)
    stale = out / "secrets" / "bots" / "gone.nk"
    stale.write_text("whatever")
    capsys.readouterr()
    assert generate(out) == 0
    err = capsys.readouterr().err
    assert mode(seed) == 0o600 and f"warning: {seed} was readable by others" in err
    assert f"note: {stale} belongs to no bot of the config (not deleted)" in err
    seed.write_text("SUNOTASEED\n")
    assert generate(out) == 1
    assert f"error: {seed}: not an NKey user seed" in capsys.readouterr().err


def test_bad_options_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert generate(tmp_path, "--cluster", "3", "--port", "4222", "--route-port", "4223") == 1
    assert "error: the port ranges overlap on 127.0.0.1" in capsys.readouterr().err
    assert generate(tmp_path, "--cluster", "3", "--hosts", "a,b") == 1
    assert "error: --hosts names 2 hosts for 3 servers" in capsys.readouterr().err


def test_cluster_nodes_get_consecutive_ports_on_one_host_the_same_ports_on_several() -> None:
    shared = plan_nodes(DeployOptions(cluster=3, port=5000, monitor_port=5100, route_port=5200))
    assert [(n.name, n.port, n.monitor_port, n.route_port) for n in shared] == [
        ("citarion-1", 5000, 5100, 5200),
        ("citarion-2", 5001, 5101, 5201),
        ("citarion-3", 5002, 5102, 5202),
    ]
    spread = plan_nodes(DeployOptions(cluster=3, hosts=("10.0.0.1", "10.0.0.2", "10.0.0.3")))
    assert [(n.host, n.port, n.route_port) for n in spread] == [
        ("10.0.0.1", 4222, 6222),
        ("10.0.0.2", 4222, 6222),
        ("10.0.0.3", 4222, 6222),
    ]


def free_port_block(count: int) -> int:
    """A base port such that ``base .. base + count - 1`` are all free on loopback."""
    for base in range(20_000, 60_000, 97):
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind((HOST, port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free block of ports")


@pytest.mark.slow
async def test_a_generated_three_node_cluster_runs_with_routes_authenticated_and_replicas_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = free_port_block(9)
    ports = ["--port", str(base), "--monitor-port", str(base + 3), "--route-port", str(base + 6)]
    out = tmp_path / "deploy"
    assert generate(out, "--cluster", "3", *ports) == 0
    assert "checked with nats-server -t: nats-1.conf, nats-2.conf, nats-3.conf" in capsys.readouterr().out
    password = (out / "secrets" / "route-password").read_text().strip()
    for index in (1, 2, 3):
        assert password not in (out / f"nats-{index}.conf").read_text(), "route credentials stay in secrets/"
        assert mode(out / "secrets" / f"routes-{index}.conf") == 0o600
    servers = [
        NatsServer.from_config(out / f"nats-{i}.conf", port=base + i - 1, monitor_port=base + 2 + i)
        for i in (1, 2, 3)
    ]
    with NatsCluster.of(servers, name="citarion") as cluster:
        routes = cluster.servers[0].monitor("routez")
        assert routes["num_routes"] >= 2
        host = load_config(out / "citarion-host.toml").config.backend.nats
        assert host.servers == cluster.urls and host.replicas == 3 and host.manage_stream
        seeded = host.model_copy(update={"nkeys_seed": str(out / "secrets" / "host.nk")})
        async with NatsBus(seeded) as bus:
            assert bus.stream_info is not None and bus.stream_info.config.num_replicas == 3
        anonymous = nats.NATS()
        try:
            with pytest.raises(nats.errors.Error, match="Authorization Violation"):  # no credentials
                await asyncio.wait_for(anonymous.connect(cluster.urls[0], allow_reconnect=False), 5)
        finally:
            await anonymous.close()


def test_nats_server_refuses_a_broken_config_with_its_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.conf"
    broken.write_text('accounts { A { users: [ { nkey: "UNOTAKEY" } ] } }\n')
    with pytest.raises(Exception, match=r"broken\.conf: nats-server refuses it: .*nkey"):
        check_with_server(broken)
