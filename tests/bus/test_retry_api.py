"""``retry_api`` tells "not yet" from "no": only the former is retried, whatever shape nats-py's
error takes (some of its ``APIError`` subclasses never set ``code``)."""

from __future__ import annotations

import pytest
from nats.js.errors import KeyNotFoundError, NotFoundError

from citarion_host.bus.nats.stream import retry_api


async def test_an_api_error_without_a_code_is_raised_as_it_is() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise KeyNotFoundError()

    with pytest.raises(KeyNotFoundError):
        await retry_api(call, 1.0)
    assert calls == 1


async def test_a_definite_answer_is_not_retried() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise NotFoundError(code=404, err_code=10059, description="stream not found")

    with pytest.raises(NotFoundError):
        await retry_api(call, 1.0)
    assert calls == 1
