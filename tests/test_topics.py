"""Unit and property tests of ``citarion_host.topics`` (NATS subject semantics).

The property tests decide ``contains`` and ``overlaps`` by brute force: enumerate every concrete topic
over a small token universe and compare the sets of topics each pattern matches. That is only sound if
the universe is rich enough:

* a *fresh* token (``FRESH``, used by no pattern) must be in it. A ``*`` matches tokens that no literal
  of the other pattern names; without a fresh token, ``a`` vs ``*`` over the one-letter alphabet
  ``{a}`` would wrongly count as containment. One fresh token suffices because patterns only compare
  tokens for equality with their own literals, so all unnamed tokens behave the same.
* topics must be one token longer than the longest pattern, so that ``a.>`` (any length) is
  distinguished from ``a.*.*.*`` (fixed length); every longer topic behaves like that one.

The reference matcher ``_ref_match`` is written independently (recursively) of ``topics._match_tokens``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citarion_host.bus import MemoryBus
from citarion_host.errors import ConfigError
from citarion_host.events import Event, EventCatalog, InvalidEventError
from citarion_host.settings import load_config
from citarion_host.topics import (
    FULL_WILDCARD,
    MAX_TOPIC_BYTES,
    MAX_TOPIC_TOKENS,
    SINGLE_WILDCARD,
    PatternIndex,
    TopicError,
    contains,
    matches,
    overlaps,
    split_pattern,
    split_topic,
)

LITERALS = ("a", "b", "c")
FRESH = "z"  # in no pattern: stands for every token the patterns do not name
MAX_PATTERN = 4
UNIVERSE = tuple(
    ".".join(tokens)
    for length in range(1, MAX_PATTERN + 2)
    for tokens in itertools.product((*LITERALS, FRESH), repeat=length)
)
SETTINGS = settings(max_examples=400, deadline=None, database=None)


def _ref_match(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == ">":
        return len(topic) >= 1
    if not topic:
        return False
    return (head == "*" or head == topic[0]) and _ref_match(rest, topic[1:])


@cache
def _matched(pattern: str) -> frozenset[str]:
    tokens = tuple(pattern.split("."))
    return frozenset(t for t in UNIVERSE if _ref_match(tokens, tuple(t.split("."))))


@st.composite
def patterns(draw: st.DrawFn, literals: tuple[str, ...] = LITERALS, max_len: int = MAX_PATTERN) -> str:
    body = draw(st.lists(st.sampled_from((*literals, "*")), min_size=0, max_size=max_len))
    if not body or (len(body) < max_len and draw(st.booleans())):
        body.append(">")
    return ".".join(body)


topics_strategy = st.sampled_from(UNIVERSE)


# --- validation -------------------------------------------------------------------------------------


def test_split_valid() -> None:
    assert split_topic("md.btc.tick") == ("md", "btc", "tick")
    assert split_topic("x") == ("x",)
    assert split_pattern("md.*.>") == ("md", "*", ">")
    assert split_pattern(">") == (">",)
    assert split_pattern("*") == ("*",)
    assert split_topic("ünï.çødé-_:/") == ("ünï", "çødé-_:/")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "topic must be a non-empty string, got ''"),
        (None, "topic must be a non-empty string, got None"),
        (b"a.b", "topic must be a non-empty string, got b'a.b'"),
        ("a b", "topic 'a b' contains whitespace"),
        ("a.b\n", "topic 'a.b\\n' contains whitespace"),
        ("a\tb", "contains whitespace"),
        ("a\r", "contains whitespace"),
        ("a\x0bb", "contains whitespace"),
        ("a\x0cb", "contains whitespace"),
        (".a", "topic '.a' has an empty token (leading, trailing or double dot)"),
        ("a.", "topic 'a.' has an empty token"),
        ("a..b", "topic 'a..b' has an empty token"),
        (".", "has an empty token"),
        ("a.*", "topic 'a.*' contains wildcard '*'; only patterns may"),
        ("a.>", "topic 'a.>' contains wildcard '>'; only patterns may"),
        ("*", "contains wildcard '*'"),
        (">", "contains wildcard '>'"),
    ],
)
def test_invalid_topics(text: object, message: str) -> None:
    bad = cast(str, text)
    with pytest.raises(TopicError) as caught:
        split_topic(bad)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(TopicError):
        matches("a", bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "pattern must be a non-empty string, got ''"),
        (7, "pattern must be a non-empty string, got 7"),
        ("a *", "pattern 'a *' contains whitespace"),
        ("a..*", "pattern 'a..*' has an empty token"),
        ("*.", "has an empty token"),
        (">.a", "pattern '>.a': '>' must be the last token (found at position 0)"),
        ("a.>.b", "pattern 'a.>.b': '>' must be the last token (found at position 1)"),
        ("a.>.>", "found at position 1"),
    ],
)
def test_invalid_patterns(text: object, message: str) -> None:
    bad = cast(str, text)
    with pytest.raises(TopicError) as caught:
        split_pattern(bad)
    assert message in str(caught.value)
    with pytest.raises(TopicError):
        matches(bad, "a")
    with pytest.raises(TopicError):
        contains(bad, "a")
    with pytest.raises(TopicError):
        contains("a", bad)
    with pytest.raises(TopicError):
        overlaps("a", bad)


# --- matches, contains, overlaps --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a.b.c", "a.b.c", True),
        ("a.b.c", "a.b", False),
        ("a.b", "a.b.c", False),
        ("a.b.c", "a.b.d", False),
        ("a.*.c", "a.x.c", True),
        ("a.*.c", "a.x.y.c", False),
        ("a.*", "a", False),
        ("*", "a", True),
        ("*", "a.b", False),
        ("*.*", "a.b", True),
        ("a.>", "a.b", True),
        ("a.>", "a.b.c.d", True),
        ("a.>", "a", False),
        (">", "a", True),
        (">", "a.b.c", True),
        ("*.>", "a", False),
        ("*.>", "a.b", True),
        ("a.*.>", "a.b", False),
        ("a.*.>", "a.b.c", True),
    ],
)
def test_matches_table(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.*", "a.b", True),
        ("a.b", "a.*", False),
        ("a.>", "a.*", True),
        ("a.>", "a.*.>", True),
        ("a.>", "a.>", True),
        ("a.>", "a", False),
        ("a.*", "a.>", False),
        ("a.*.>", "a.>", False),
        (">", "a.*.>", True),
        (">", ">", True),
        ("*", ">", False),
        ("*.>", ">", False),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b", False),
        ("a.*", "a.*.c", False),
        ("*.*", "*.*", True),
        ("a.b", "a.c", False),
    ],
)
def test_contains_table(outer: str, inner: str, expected: bool) -> None:
    assert contains(outer, inner) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.c", False),
        ("a.*", "*.b", True),
        ("a.>", "*.b.c", True),
        ("a.>", "a", False),
        ("a.*", "a.b.c", False),
        (">", "a.b.c", True),
        ("*", "a.b", False),
        ("*.>", "a", False),
        ("a.*.c", "a.b.>", True),
        ("a.*.c", "a.b.d", False),
        ("b.>", "a.>", False),
    ],
)
def test_overlaps_table(first: str, second: str, expected: bool) -> None:
    assert overlaps(first, second) is expected
    assert overlaps(second, first) is expected


@SETTINGS
@given(patterns(), topics_strategy)
def test_matches_agrees_with_reference(pattern: str, topic: str) -> None:
    assert matches(pattern, topic) is (topic in _matched(pattern))


@SETTINGS
@given(patterns(), patterns())
def test_contains_is_subset_of_matched_topics(outer: str, inner: str) -> None:
    assert contains(outer, inner) is _matched(inner).issubset(_matched(outer)), (outer, inner)


@SETTINGS
@given(patterns(), patterns())
def test_overlaps_is_a_common_matched_topic(first: str, second: str) -> None:
    expected = not _matched(first).isdisjoint(_matched(second))
    assert overlaps(first, second) is expected, (first, second)
    assert overlaps(second, first) is expected


@SETTINGS
@given(patterns(), patterns(), patterns())
def test_contains_is_a_preorder(a: str, b: str, c: str) -> None:
    assert contains(a, a)
    if contains(a, b) and contains(b, c):
        assert contains(a, c)
    if contains(a, b):  # b is never empty, so containment implies overlap
        assert overlaps(a, b)


def test_contains_and_overlaps_exhaustively_for_short_patterns() -> None:
    """Every pair of patterns of up to 3 tokens over {a, b}: no sampling gaps."""
    short = sorted(
        {
            ".".join(body + tail)
            for length in range(0, 4)
            for body in map(list, itertools.product(("a", "b", "*"), repeat=length))
            for tail in ([], [">"])
            if 1 <= len(body) + len(tail) <= 3
        }
    )
    wrong = [
        (outer, inner)
        for outer in short
        for inner in short
        if contains(outer, inner) is not _matched(inner).issubset(_matched(outer))
        or overlaps(outer, inner) is _matched(inner).isdisjoint(_matched(outer))
    ]
    assert len(short) == 52
    assert wrong == []


# --- PatternIndex -----------------------------------------------------------------------------------


class Item:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def test_index_add_match_in_insertion_order() -> None:
    index: PatternIndex[str] = PatternIndex()
    for pattern, item in [("a.>", "s1"), ("a.b", "s2"), ("*.b", "s3"), (">", "s4"), ("a.*", "s5")]:
        index.add(pattern, item)
    assert len(index) == 5
    assert index.match("a.b") == ("s1", "s2", "s3", "s4", "s5")
    assert index.match("x.b") == ("s3", "s4")
    assert index.match("a") == ("s4",)
    assert index.match("a.b.c") == ("s1", "s4")
    assert index.match("q.r.s") == ("s4",)


def test_index_same_item_twice_is_returned_twice() -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add("a.*", "x")
    index.add("a.b", "x")
    index.add("a.b", "x")
    assert index.match("a.b") == ("x", "x", "x")
    assert index.match("a.c") == ("x",)
    assert len(index) == 3


def test_index_remove() -> None:
    one, two, three = Item("one"), Item("two"), Item("three")
    index: PatternIndex[Item] = PatternIndex()
    index.add("a.b", one)
    index.add("a.b", two)
    index.add("a.>", three)
    assert index.remove("a.b", one) is True
    assert index.match("a.b") == (two, three)
    assert index.remove("a.b", one) is False, "already removed"
    assert index.remove("a.c", two) is False, "wrong pattern"
    assert index.remove("x.y.z", two) is False, "unknown path"
    assert index.remove("a.*", two) is False
    assert index.remove("a.>", two) is False, "wrong item under an existing pattern"
    assert index.remove("a.>", three) is True
    assert index.match("a.b") == (two,)
    assert len(index) == 1


def test_index_remove_uses_identity_not_equality() -> None:
    index: PatternIndex[list[int]] = PatternIndex()
    registered = [1]
    index.add("a", registered)
    assert index.remove("a", [1]) is False
    assert index.remove("a", registered) is True


def test_index_remove_one_of_duplicate_registrations() -> None:
    item = Item("dup")
    index: PatternIndex[Item] = PatternIndex()
    index.add("a", item)
    index.add("a", item)
    assert index.remove("a", item) is True
    assert index.match("a") == (item,)
    assert index.remove("a", item) is True
    assert index.match("a") == ()


def test_index_prunes_empty_branches() -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add("a.b.c.d", "deep")
    index.add("a.b.>", "full")
    index.add(">", "root")
    index.add("x", "x")
    assert index.remove("a.b.c.d", "deep")
    assert list(index._root.children["a"].children["b"].children) == [], "c.d pruned, b kept for '>'"
    assert index.remove("a.b.>", "full")
    assert set(index._root.children) == {"x"}
    assert index.remove("x", "x") and index.remove(">", "root")
    assert index._root.children == {} and index._root.full == [] and len(index) == 0


def test_index_cache_hits_and_invalidation() -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add("a.*", "s1")
    first = index.match("a.b")
    assert index.match("a.b") is first, "second lookup is served from the cache"
    index.add("a.b", "s2")
    assert index.match("a.b") == ("s1", "s2"), "add invalidates"
    index.remove("a.*", "s1")
    assert index.match("a.b") == ("s2",), "remove invalidates"
    index.remove("a.b", "nope")
    assert index.match("a.b") == ("s2",)
    assert index.match("zzz") == ()


def test_index_cache_is_bounded() -> None:
    index: PatternIndex[str] = PatternIndex(cache_limit=3)
    index.add(">", "all")
    for number in range(10):
        assert index.match(f"t{number}") == ("all",)
        assert len(index._cache) <= 3


def test_index_rejects_invalid_input_without_changing() -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add("a", "x")
    for bad in ("a.>.b", "", "a..b", "a b"):
        with pytest.raises(TopicError):
            index.add(bad, "y")
        with pytest.raises(TopicError):
            index.remove(bad, "x")
    for bad_topic in ("a.*", "a.>", "", "a."):
        with pytest.raises(TopicError):
            index.match(bad_topic)
    assert len(index) == 1 and list(index.items()) == ["x"]


def test_index_items() -> None:
    index: PatternIndex[str] = PatternIndex()
    assert list(index.items()) == []
    registrations = [("a.b", "1"), ("a.>", "2"), (">", "3"), ("*.*", "4"), ("a.b", "5"), ("a.b", "1")]
    for pattern, item in registrations:
        index.add(pattern, item)
    assert sorted(index.items()) == sorted(item for _, item in registrations)


@SETTINGS
@given(
    st.lists(patterns(), max_size=25),
    st.lists(st.integers(min_value=0, max_value=24), max_size=10),
    st.lists(topics_strategy, min_size=1, max_size=30),
    st.integers(min_value=1, max_value=8),
)
def test_index_agrees_with_linear_scan(
    registered: list[str], removals: list[int], topics: list[str], cache_limit: int
) -> None:
    index: PatternIndex[Item] = PatternIndex(cache_limit=cache_limit)
    live = [(pattern, Item(f"i{n}")) for n, pattern in enumerate(registered)]
    for pattern, item in live:
        index.add(pattern, item)
    for position in removals:
        if position < len(live):
            pattern, item = live.pop(position)
            assert index.remove(pattern, item)
    assert len(index) == len(live)
    assert sorted(map(id, index.items())) == sorted(id(item) for _, item in live)
    for topic in topics + topics:  # the second pass is served from the cache
        expected = tuple(item for pattern, item in live if matches(pattern, topic))
        assert index.match(topic) == expected, topic


@SETTINGS
@given(
    st.lists(patterns(), max_size=25),
    st.lists(st.integers(min_value=0, max_value=24), max_size=10),
    st.lists(patterns(), min_size=1, max_size=10),
)
def test_index_overlap_queries_agree_with_pairwise_overlaps(
    registered: list[str], removals: list[int], questions: list[str]
) -> None:
    """``overlapping``/``overlaps_any`` (one trie walk) give what comparing every registered pattern
    with :func:`overlaps` gives (itself proven against brute force above), after removals too."""
    index: PatternIndex[Item] = PatternIndex()
    live = [(pattern, Item(f"i{n}")) for n, pattern in enumerate(registered)]
    for pattern, item in live:
        index.add(pattern, item)
    for position in removals:
        if position < len(live):
            pattern, item = live.pop(position)
            assert index.remove(pattern, item)
    for question in questions:
        expected = tuple(item for pattern, item in live if overlaps(pattern, question))
        assert index.overlapping(question) == expected, question
        assert index.overlaps_any(question) is bool(expected), question


def test_index_overlap_queries_by_example() -> None:
    index: PatternIndex[str] = PatternIndex()
    for pattern in ("a.b.c", "a.*.d", "a.>", "x.y", "*.y", ">"):
        index.add(pattern, pattern)
    assert index.overlapping("a.b.c") == ("a.b.c", "a.>", ">")
    assert index.overlapping("a.*.*") == ("a.b.c", "a.*.d", "a.>", ">")
    assert index.overlapping("a.>") == ("a.b.c", "a.*.d", "a.>", "*.y", ">")  # a.y
    assert index.overlapping("q.y") == ("*.y", ">")
    assert index.overlapping("a") == (">",)  # 'a.>' needs a second token
    index.remove(">", ">")
    assert not index.overlaps_any("a") and index.overlaps_any("x.q.>") is False
    with pytest.raises(TopicError):
        index.overlapping("a.>.b")


# --- limits (docs/limits.md) ------------------------------------------------------------------------


def test_limits_are_those_documented() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "limits.md").read_text()
    assert (MAX_TOPIC_BYTES, MAX_TOPIC_TOKENS) == (255, 16)
    assert f"| {MAX_TOPIC_BYTES} bytes (UTF-8) |" in text and f"| {MAX_TOPIC_TOKENS} tokens |" in text


@pytest.mark.parametrize("split", [split_topic, split_pattern])
def test_topic_length_and_token_count_are_capped(split: Callable[[str], tuple[str, ...]]) -> None:
    at_length = ".".join(["x" * 63] * 4)  # 4 * 63 + 3 dots = 255 bytes
    assert len(at_length) == MAX_TOPIC_BYTES and len(split(at_length)) == 4
    assert len(split(".".join(["a"] * MAX_TOPIC_TOKENS))) == MAX_TOPIC_TOKENS
    assert split("é" * 127) == ("é" * 127,)  # 254 bytes: the limit counts UTF-8 bytes, not characters
    for over, reason in [
        (at_length + "x", "is 256 bytes long, over the limit of 255 (see docs/limits.md)"),
        ("é" * 128, "is 256 bytes long, over the limit of 255"),
        ("a" * 4096, "is 4096 bytes long"),
        (
            ".".join(["a"] * (MAX_TOPIC_TOKENS + 1)),
            "has 17 tokens, over the limit of 16 (see docs/limits.md)",
        ),
    ]:
        with pytest.raises(TopicError) as caught:
            split(over)
        message = str(caught.value)
        assert reason in message
        assert len(message) < 200 and "\n" not in message, "one readable line, not the whole text"


async def test_bus_catalog_and_config_refuse_an_over_long_topic_alike(tmp_path: Path) -> None:
    """Issue 10: a ~4 KB subject passed every check, then nats-server closed the connection. Every
    entry point refuses it now, each with the same one-line reason."""
    long_topic = "market.ticker." + "x" * 4096
    reason = "is 4110 bytes long, over the limit of 255 (see docs/limits.md)"
    with pytest.raises(InvalidEventError) as caught:
        EventCatalog.with_builtins().make(long_topic, {}, source="LUM")
    assert reason in str(caught.value) and len(str(caught.value)) < 300
    async with MemoryBus() as bus:
        with pytest.raises(TopicError, match=re.escape(reason)):
            await bus.subscribe(long_topic, _ignore)
    config = tmp_path / "long.toml"
    config.write_text(f'[host]\nstop_on = "{long_topic}"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    [finding] = refused.value.findings
    assert (finding.key, reason in finding.message) == ("host.stop_on", True)


async def _ignore(event: Event) -> None:
    pass


def test_wildcard_constants() -> None:
    assert (SINGLE_WILDCARD, FULL_WILDCARD) == ("*", ">")
