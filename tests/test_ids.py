"""UUIDv7 ids: valid, unique, sortable by time, monotonic within a millisecond."""

from __future__ import annotations

import random
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


def test_an_id_is_the_time_the_counter_and_the_tail_as_rfc_9562_lays_them_out() -> None:
    """The millisecond's prefix and tail are built from look-ups and ``bytes.hex`` (cheaper than format
    specs): the same text as formatting the fields, at every time (the top bits cached per 65 s)."""
    generator = _UUIDv7Generator()
    generator._random.seed(7)
    reference = random.Random(7)
    for ms in (0, 1, 0xFF, 0x100, 0xFFFF, 0x10000, 0x10001, 1_700_000_000_123, 2**48 - 1):
        tail = reference.getrandbits(62)
        suffix = f"{0x8000 | (tail >> 48):04x}-{tail & 0xFFFF_FFFF_FFFF:012x}"
        first, second = generator.new(ms), generator.new(ms)
        assert first == f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7000-{suffix}"
        assert second == f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7001-{suffix}"
        parsed = uuid.UUID(first)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
