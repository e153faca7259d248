"""Tasks: background work held until it ends, failures reported once, cancelled together."""

from __future__ import annotations

import asyncio
import logging

import pytest

from citarion_host.tasks import Tasks


async def test_a_failure_is_logged_and_reported_with_the_task_and_the_task_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures: list[tuple[str, BaseException]] = []
    tasks = Tasks("grid-1", lambda task, exc: failures.append((task.get_name(), exc)))

    async def boom() -> None:
        raise ValueError("no price")

    with caplog.at_level(logging.ERROR, logger="citarion_host.tasks"):
        task = tasks.spawn(boom(), "feed")
        await asyncio.wait({task})
        await asyncio.sleep(0)  # the done-callback runs on the next loop turn
    assert [(name, str(exc)) for name, exc in failures] == [("grid-1:feed", "no price")]
    assert len(tasks) == 0
    record = next(r for r in caplog.records if r.getMessage() == "background task failed")
    assert (record.__dict__["owner"], record.__dict__["task"]) == ("grid-1", "grid-1:feed")


async def test_cancel_all_cancels_and_waits_and_a_cancellation_is_no_failure() -> None:
    failures: list[BaseException] = []
    tasks = Tasks("feed", lambda _task, exc: failures.append(exc))
    stopped: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(name)

    spawned = [tasks.spawn(forever(str(i))) for i in range(3)]
    await asyncio.sleep(0)
    assert len(tasks) == 3 and {t.get_name() for t in spawned} == {"feed:task"}
    assert await tasks.cancel_all() == set()
    assert sorted(stopped) == ["0", "1", "2"] and all(t.cancelled() for t in spawned)
    await asyncio.sleep(0)
    assert failures == [] and len(tasks) == 0


async def test_a_task_ignoring_cancellation_is_returned_after_the_timeout_and_kept() -> None:
    tasks = Tasks("stubborn")
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # refuses to stop

    task = tasks.spawn(stubborn(), "s")
    await asyncio.sleep(0)
    pending = await tasks.cancel_all(timeout=0.05)
    assert pending == {task} and list(tasks) == [task]
    release.set()
    assert await tasks.wait(timeout=5) == set()
    await asyncio.sleep(0)
    assert len(tasks) == 0
