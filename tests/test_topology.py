def test_a_placement_runs_some_bots_and_a_reload_compares_only_those() -> None:
    from citarion_host.settings import HostConfig
    from citarion_host.topology import Placement, diff_topology

    def config(**params: int) -> HostConfig:
        bots = [
            {"id": name, "code": "GRD", "plugin": "grid", "params": {"levels": params.get(name, 5)}}
            for name in ("a", "b", "c")
        ]
        return HostConfig.model_validate({"bots": bots})

    placement = Placement.of(only=["a", "b"], excluded=["b"])
    assert [placement.runs(i) for i in "abc"] == [True, False, False]
    diff = diff_topology(config(), config(a=6, c=7), placement)
    assert [b.id for b in diff.restarted] == ["a"] and diff.unchanged == ()  # c is not placed here
    assert Placement.of(only=["a", "zz"]).unknown(config()) == ["zz"]


def test_run_refuses_an_unknown_id_in_only_or_except(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from citarion_host.cli import main

    config = tmp_path / "c.toml"
    config.write_text('[[bots]]\nid = "a"\ncode = "GRD"\nplugin = "grid"\n')
    assert main(["run", "--config", str(config), "--only", "a,zz"]) == 1
    assert "--only/--except name bots the config does not have: ['zz']" in capsys.readouterr().err
