"""Masking secrets before they are printed: URL credentials, and values of secret-looking keys.

One place for it, used by ``config show``, the log formatters, CLI errors, the NATS connection errors
and Wolf's webhook logs, so a password written into a server URL (``nats://app:s3cret@nats-1:4222``,
as NATS allows) never reaches a terminal, a log shipper or a bug report.

What is masked:

* the password of a URL's user info (``nats://app:***@host``); a user info without a password
  (``nats://TOKEN@host``: NATS reads it as a token) is masked whole;
* query parameters whose name looks secret (``?token=***``), in :func:`mask_url`;
* in a config dump, the string values of keys named like ``password``, ``token``, ``secret``,
  ``api_key`` (:func:`mask_config`).

Why a regex over free text for logs and errors: the URL may sit inside any message (``cannot
connect to NATS at nats://a:b@h:4222``), including those of libraries.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "mask_config", "mask_text", "mask_url", "url_origin"]

MASK = "***"
_SECRET_KEY = re.compile(r"password|passwd|^pass$|secret|token|api_?key|private_?key|^sig$", re.IGNORECASE)
# scheme://userinfo@ : the user info runs to the last '@' before the host (an unescaped '@' in a
# password must not leave its end visible); it has no '/', '?', '#', quote or space
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s\"']+)@")


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _password = match["userinfo"].partition(":")
    masked = f"{user}:{MASK}" if colon else MASK
    return f"{match['scheme']}{masked}@"


def mask_text(text: str) -> str:
    """``text`` with the credentials of every URL in it masked."""
    if "@" not in text:
        return text
    return _USERINFO.sub(_mask_userinfo, text)


def mask_url(url: str) -> str:
    """One URL with its credentials and secret-looking query values masked."""
    masked = mask_text(url)
    try:
        parts = urlsplit(masked)
    except ValueError:
        return masked
    if not parts.query:
        return masked
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = [(key, MASK if _SECRET_KEY.search(key) else value) for key, value in pairs]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: what a log may say about an endpoint whose path itself
    can be the secret (a Slack-style webhook URL)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme or '?'}://{host}{port}"


def mask_config(value: Any, key: str = "") -> Any:
    """A copy of a config tree (dicts, lists, scalars) with secrets masked: values of secret-looking
    keys, and URL credentials in every string."""
    if isinstance(value, dict):
        return {k: mask_config(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_config(v, key) for v in value]
    if isinstance(value, str) and key and _SECRET_KEY.search(key):
        return MASK
    if isinstance(value, str):
        return mask_url(value) if "://" in value else value
    return value
