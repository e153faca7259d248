"""Shared fixtures: real nats-server processes on free loopback ports (never the shared :4222 one).

Every fixture stops its servers in teardown whatever the test outcome (the ``with`` block closes them),
and tests that use one of them get the ``nats`` marker, so ``-m "not nats"`` skips them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from citarion_host.natsserver import NatsCluster, NatsServer

NATS_FIXTURES = frozenset({"nats_server", "shared_nats_server", "nats_cluster", "jetstream_runs"})


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A test that runs the CLI configures logging on its captured stderr, which pytest then closes:
    take that handler away again, so later tests do not log into a closed file."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers and getattr(handler, "_citarion", False):  # see logs.configure_logging
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A fresh single JetStream node for this test (own ports, own temp store dir)."""
    with NatsServer() as server:
        yield server


@pytest.fixture(scope="session")
def shared_nats_server() -> Iterator[NatsServer]:
    """One JetStream node for the whole session; tests must clean up the streams they create."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def nats_cluster() -> Iterator[NatsCluster]:
    """A fresh 3-node JetStream cluster with an elected meta leader."""
    with NatsCluster(3) as cluster:
        yield cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if NATS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.nats)
