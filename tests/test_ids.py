"""UUIDv7 ids: valid, unique, sortable by time, monotonic within a millisecond."""

from __future__ import annotations

import uuid

from citarion_host.ids import _UUIDv7Generator, new_id


def test_ids_are_valid_uuid7_with_rfc_variant() -> None:
    parsed = uuid.UUID(new_id())
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_ids_are_unique_and_strictly_increasing() -> None:
    ids = [new_id() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_counter_overflow_borrows_the_next_millisecond_and_stays_ordered() -> None:
    generator = _UUIDv7Generator()
    ids = [generator.new(1_000) for _ in range(5_000)]  # more than 4096 in one millisecond
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert int(ids[-1].replace("-", "")[:12], 16) == 1_001


def test_clock_stepping_back_keeps_order() -> None:
    generator = _UUIDv7Generator()
    first = generator.new(2_000)
    second = generator.new(1_500)
    assert second > first


def test_timestamp_prefix_encodes_the_millisecond() -> None:
    generator = _UUIDv7Generator()
    assert generator.new(0x0123_4567_89AB).startswith("01234567-89ab-7000-")
