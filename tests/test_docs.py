"""Docs stay complete: every hook, every CLI command and every config key is documented."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from pydantic import BaseModel

from citarion_host import hookspecs
from citarion_host.cli import build_parser
from citarion_host.settings import HostConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"
README = Path(__file__).resolve().parents[1] / "README.md"


def hook_names() -> list[str]:
    return [
        name for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("citarion_")
    ]


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented(hook: str) -> None:
    assert f"`{hook}(" in (DOCS / "plugins.md").read_text()


def command_names() -> list[str]:
    action = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(action.choices)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", command_names())
def test_every_command_is_in_the_readme(command: str) -> None:
    assert f"citarion-host {command}" in README.read_text()


def config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(f"{prefix}{name}")
        annotation = field.annotation
        for candidate in getattr(annotation, "__args__", (annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                keys += config_keys(candidate, f"{prefix}{name}.")
            for inner in getattr(candidate, "__args__", ()):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    keys += config_keys(inner, f"{prefix}{name}[].")
    return keys


@pytest.mark.parametrize("key", config_keys(HostConfig))
def test_every_config_key_is_documented(key: str) -> None:
    text = (DOCS / "configuration.md").read_text()
    leaf = key.rsplit(".", 1)[-1].removesuffix("[]")
    spelled = [f"`{leaf}`", f"`{key}`", f"[{key}]", f"[[{key}]]"]
    assert any(form in text for form in spelled), key


def test_the_loader_limits_are_documented() -> None:
    from citarion_host.settings_files import MAX_DEPTH, MAX_FILE_BYTES, MAX_INCLUDE_DEPTH

    limits = (DOCS / "configuration.md").read_text().split("## Limits", 1)[1].split("\n## ", 1)[0]
    assert f"| {MAX_FILE_BYTES // 1024 // 1024} MiB |" in limits
    assert f"| {MAX_DEPTH} levels |" in limits
    assert f"| {MAX_INCLUDE_DEPTH} files |" in limits


def test_the_reload_refusals_and_the_trust_model_are_documented() -> None:
    reload = (DOCS / "reload.md").read_text()
    for key in ("reload_debounce_s", "reload_max_removed_share", "plugin_import_timeout_s"):
        assert f"`{key}`" in reload or "reload_debounce_s`" in reload, key
    security = (DOCS / "security.md").read_text()
    for topic in (
        "## Trust model",
        "citarion-host check` imports and runs plugin code",
        "## Secrets",
        "## Wolf",
    ):
        assert topic in security, topic
