"""Docs that cannot drift: every file, module, command and config key a doc names exists; the
README's layout matches the tree; benchmark figures live in docs, not in docstrings."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from citarion_host.cli import build_parser
from citarion_host.settings import HostConfig

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "plugins").glob("*/README.md")])
TRACKED_DIRS = ("citarion_host", "plugins", "configs", "docs", "tests", "deploy")
PATH = re.compile(
    r"`((?:citarion_host|plugins|configs|docs|tests|deploy)/[\w./-]+|[\w-]+\.(?:py|md|toml|conf))`"
)
COMMAND = re.compile(r"`citarion-host (?!--)([a-z][a-z-]+)")
KEY = re.compile(r"`\[(host|backend|backend\.nats|logging|ui|state)\] ([a-z_]+)(?![a-z_]| = \.\.\.)")


def _all_files() -> list[Path]:
    return [p for d in TRACKED_DIRS if (REPO / d).exists() for p in (REPO / d).rglob("*") if p.is_file()]


FILES = _all_files()
NAMES = {p.name for p in FILES}
#: Files a doc names that are not in the repository on purpose: what commands write, and examples.
ILLUSTRATIVE = {
    "nats-server.conf",  # written by `citarion-host nats-config`
    "nats-N.conf",
    "citarion.toml",  # written by `citarion-host init`
    "configs/bots.toml",  # an include in an example of a duplicate-id error
    "configs/...",
    "deploy/secrets/",  # created by nats-config, git-ignored
}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_file_a_doc_names_exists(doc: Path) -> None:
    missing = []
    for name in PATH.findall(doc.read_text(encoding="utf-8")):
        if name in ILLUSTRATIVE:
            continue
        if "/" in name:
            target = REPO / name.rstrip("/")
            if "*" not in name and not target.exists():
                missing.append(name)
        elif name not in NAMES and not name.startswith(("my_", "prod.", "dev.", "citarion-host.")):
            missing.append(name)
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_a_doc_names_exists(doc: Path) -> None:
    parser = build_parser()
    commands = set(next(a for a in parser._actions if a.dest == "command").choices)  # type: ignore[union-attr,arg-type]
    words = {"--config", "-h"} | commands
    unknown = {c for c in COMMAND.findall(doc.read_text(encoding="utf-8")) if c not in words}
    assert not unknown, f"{doc.name} names commands that do not exist: {sorted(unknown)}"


def _keys(model: type, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            found |= _keys(annotation, f"{prefix}{name}.")
        found.add(f"{prefix}{name}")
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_key_a_doc_names_exists(doc: Path) -> None:
    keys = _keys(HostConfig)
    unknown = {
        f"[{s}] {k}" for s, k in KEY.findall(doc.read_text(encoding="utf-8")) if f"{s}.{k}" not in keys
    }
    assert not unknown, f"{doc.name} names config keys that do not exist: {sorted(unknown)}"


def test_the_readme_layout_matches_the_tree() -> None:
    """Every module of the package is in the README's layout, and everything there exists."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("```", 2)[1]
    package = REPO / "citarion_host"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py") if p.name != "__init__.py"}
    packages = {p.parent.relative_to(package).as_posix() + "/" for p in package.rglob("__init__.py")} - {"./"}
    named = set(re.findall(r"([\w/]+\.py|[\w]+/)", layout))
    unmentioned = {
        m for m in modules if m not in named and Path(m).name not in named and not _covered(m, layout)
    }
    assert not unmentioned, f"modules missing from the README layout: {sorted(unmentioned)}"
    for name in named:
        if name.endswith(".py") and "*" not in name and name != "__init__.py":
            exists = (REPO / name).exists() or any(
                m == name or m.endswith("/" + name) or Path(m).name == name for m in modules
            )
            assert exists, f"the README layout names {name}, which does not exist"
    assert packages <= named | {p for p in packages if p[:-1] in layout}


def _covered(module: str, layout: str) -> bool:
    """A module covered by a glob line (``bench*.py``) or its package's line (``bus/nats/``)."""
    stem = Path(module).name
    globs = re.findall(r"([\w/]*\*[\w.]*)", layout)
    if any(Path(stem).match(g.split("/")[-1]) for g in globs):
        return True
    return any(module.startswith(d) for d in re.findall(r"(?<![\w/])([\w]+/(?:[\w]+/)?)(?=\s)", layout))


FIGURE = re.compile(r"\d[\d,.]*\s?(?:k\s)?(?:ev/s|events/s|msg/s|typed events/s)\b")


def test_benchmark_figures_live_in_docs_not_in_docstrings() -> None:
    """Measured figures age; the docstrings say why and point to docs/performance.md. (The benchmark
    modules themselves are exempt: they name the rates they run at.)"""
    offenders = []
    for path in (REPO / "citarion_host").rglob("*.py"):
        if path.name.startswith("bench"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node) or ""
                if FIGURE.search(doc):
                    offenders.append(f"{path.relative_to(REPO)}:{getattr(node, 'name', '<module>')}")
    assert not offenders, f"benchmark figures in docstrings (move them to docs/performance.md): {offenders}"
