"""Secrets masked wherever they could be printed: ``config show``, log lines, CLI errors."""

from __future__ import annotations

import io
import json
import logging
import os
import tomllib
from pathlib import Path

import pytest

from citarion_host.cli import main
from citarion_host.logs import configure_logging
from citarion_host.redact import mask_config, mask_text, mask_url, url_origin


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("nats://app:s3cret@nats-1:4222", "nats://app:***@nats-1:4222"),
        ("nats://T0KEN@nats-1:4222", "nats://***@nats-1:4222"),
        ("tls://app:p@ss@word@h:4222", "tls://app:***@h:4222"),  # an unescaped '@' in the password
        ("at nats://a:b@h1:1,nats://c:d@h2:2.", "at nats://a:***@h1:1,nats://c:***@h2:2."),
        ("['nats://a:b@h:1', 'nats://h:2']", "['nats://a:***@h:1', 'nats://h:2']"),
        ('{"servers": "wss://a:b@h/x"}', '{"servers": "wss://a:***@h/x"}'),
        ("mail me at ops@example.com", "mail me at ops@example.com"),
        ("nats://h:4222 has no credentials", "nats://h:4222 has no credentials"),
    ],
)
def test_mask_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


def test_mask_url_masks_secret_query_values_too() -> None:
    assert mask_url("https://u:p@h/x?api_key=1&channel=ops&token=2") == (
        "https://u:***@h/x?api_key=***&channel=ops&token=***"
    )


def test_url_origin_keeps_scheme_host_and_port_only() -> None:
    assert url_origin("https://u:p@hooks.example.com:8443/services/T0/B0/SECRET?x=1") == (
        "https://hooks.example.com:8443"
    )
    assert url_origin("http://[::1]:80/x") == "http://[::1]:80"


def test_mask_config_masks_secret_keys_anywhere_and_url_credentials() -> None:
    config = {
        "backend": {"nats": {"servers": ["nats://app:pw@h:4222"], "password": "pw", "token": None}},
        "bots": [{"params": {"api_key": "k", "max_tokens": 5, "url": "https://h/x?secret=s", "n": "x"}}],
    }
    assert mask_config(config) == {
        "backend": {"nats": {"servers": ["nats://app:***@h:4222"], "password": "***", "token": None}},
        "bots": [{"params": {"api_key": "***", "max_tokens": 5, "url": "https://h/x?secret=***", "n": "x"}}],
    }


@pytest.fixture(autouse=True)
def _no_citarion_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("CITARION_") and name != "CITARION_NATS_SERVER":
            monkeypatch.delenv(name)


def test_config_show_masks_credentials_in_server_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[backend.nats]\nservers = ["nats://app:s3cret@nats-1:4222", "nats://T0KEN@nats-2:4222"]\n'
        '[[bots]]\nid = "wolf"\ncode = "WLF"\nplugin = "wolf"\n'
        'params = { webhook_url = "https://hook:pw@hooks.example.com/x?token=abc" }\n'
    )
    monkeypatch.setenv("CITARION_BACKEND__NATS__PASSWORD", "envpass")
    assert main(["config", "show", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    for secret in ("s3cret", "T0KEN", "envpass", ":pw@", "abc"):
        assert secret not in out
    shown = tomllib.loads(out)
    assert shown["backend"]["nats"]["servers"] == ["nats://app:***@nats-1:4222", "nats://***@nats-2:4222"]
    assert shown["backend"]["nats"]["password"] == "***"
    assert shown["bots"][0]["params"]["webhook_url"] == "https://hook:***@hooks.example.com/x?token=***"
    assert main(["config", "show", "--config", str(path), "--show-secrets"]) == 0
    assert "nats://app:s3cret@nats-1:4222" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_lines_mask_url_credentials(fmt: str) -> None:
    stream = io.StringIO()
    configure_logging("INFO", fmt, stream)  # type: ignore[arg-type]
    log = logging.getLogger("citarion_host.test_redact")
    log.warning(
        "cannot connect to %s", "nats://app:s3cret@h:4222", extra={"servers": ["tls://u:pw2@h2:4222"]}
    )
    try:
        raise OSError("refused by nats://x:pw3@h3:4222")
    except OSError:
        log.exception("failed")
    text = stream.getvalue()
    for secret in ("s3cret", "pw2", "pw3"):
        assert secret not in text
    assert "nats://app:***@h:4222" in text and "nats://x:***@h3:4222" in text
    if fmt == "json":
        assert all(json.loads(line) for line in text.splitlines() if line.startswith("{"))
