"""Masking the recent secrets (``RecentSecrets`` over ``telemetry/value_index.py``):
every registered value is masked wherever it appears, whichever way it is looked for
(value by value, or through the index at each class's stride), and a text holding none
comes back unchanged; finding the values a text holds no longer costs a search per
value; writers and readers in two threads."""

from __future__ import annotations

import contextlib
import secrets
import sys
import threading
from collections.abc import Iterator
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fast_mcp_gateway.telemetry import value_index
from fast_mcp_gateway.telemetry.redaction import MASK, RecentSecrets
from fast_mcp_gateway.telemetry.value_index import GRAM, MAX_STRIDE, masked, stride_of

WAYS = ("searched", "indexed", "chosen")


@contextlib.contextmanager
def looked_for(way: str) -> Iterator[None]:
    """``searched``: every value searched one by one; ``indexed``: every class read at
    its stride; ``chosen``: as the costs say."""
    forced = {"searched": {"FEW": 10**9},
              "indexed": {"FEW": -1, "_PER_CLASS": 10**9, "_SEARCH": 10**9}}.get(way)
    with mock.patch.multiple(value_index, **forced) if forced else contextlib.nullcontext():
        yield


def reference(text: str, values: list[str]) -> str:
    """What masking must give: every character of every occurrence masked, overlapping
    ones as one mask, again until no value is left (one may span a mask put in)."""
    while True:
        spans = sorted((at, at + len(v)) for v in values
                       for at in range(len(text) - len(v) + 1) if text.startswith(v, at))
        if not spans:
            return text
        runs: list[list[int]] = []   # overlapping spans joined; adjacent ones apart
        for start, finish in spans:
            if runs and start < runs[-1][1]:
                runs[-1][1] = max(runs[-1][1], finish)
            else:
                runs.append([start, finish])
        out, kept = [], 0
        for start, finish in runs:
            out += [text[kept:start], MASK]
            kept = finish
        text = "".join([*out, text[kept:]])


# A small alphabet (overlaps, values inside runs and inside each other) with "*" (a
# value a mask may complete), and lengths across every stride.
VALUES = st.lists(st.text("ab*-x", min_size=GRAM, max_size=80), min_size=1, max_size=40)
FILLER = st.text("ab* -xy.\n", max_size=300)


@given(values=VALUES, pieces=st.lists(st.tuples(FILLER, st.integers(0, 39)), max_size=12),
       way=st.sampled_from(WAYS))
@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_no_registered_value_is_left_in_a_masked_text(
        values: list[str], pieces: list[tuple[str, int]], way: str) -> None:
    registry = RecentSecrets(limit=1024, longest=1024)
    registry.add(values)
    text = "".join(filler + values[pick % len(values)] for filler, pick in pieces)
    with looked_for(way):
        shown = registry.mask(text)
    assert not [v for v in values if v in shown]
    assert shown == reference(text, values)


@given(values=st.lists(st.text("abcdefgh0123456789-_", min_size=GRAM, max_size=120),
                       min_size=1, max_size=60),
       text=st.text("ijklmnopqrstuvwxyz .:/\n", max_size=3000), way=st.sampled_from(WAYS))
@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_a_text_holding_no_registered_value_is_returned_as_it_is(
        values: list[str], text: str, way: str) -> None:
    registry = RecentSecrets(limit=1024, longest=1024)
    registry.add(values)
    with looked_for(way):
        assert registry.mask(text) is text


@given(values=VALUES, text=st.text("ab*-x ", max_size=400))
@settings(max_examples=200, deadline=None, database=None)
def test_both_ways_find_the_same_values(values: list[str], text: str) -> None:
    registry = RecentSecrets(limit=1024, longest=1024)
    registry.add(values)
    with looked_for("searched"):
        searched = sorted(registry.found(text))
    with looked_for("indexed"):
        assert sorted(registry.found(text)) == searched == sorted(
            {v for v in values if v in text})


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("values, text, shown", [
    # inside a longer run of token characters
    (["abc123xyz"], "key=QQabc123xyzQQ;", f"key=QQ{MASK}QQ;"),
    # two values overlapping: no character of either left
    (["abcdefgh", "efghijkl"], "<abcdefghijkl>", f"<{MASK}>"),
    (["abcdefg", "ghijklm"], "<abcdefghijklm>", f"<{MASK}>"),   # by one character
    # one inside another, and the inner one elsewhere
    (["token-123456", "secret-token-123456-end"], "secret-token-123456-end token-123456",
     f"{MASK} {MASK}"),
    # a value overlapping itself
    (["abcabcabc"], "abcabcabcabc|abcabcabcabcabcabc", f"{MASK}|{MASK}"),
    # adjacent occurrences: one mask each
    (["tok-aaaa1"], "tok-aaaa1tok-aaaa1.", f"{MASK}{MASK}."),
    # a value a mask completes: "xx" + "***" + "yy" once "bbbbbb" is masked
    (["xx***yy", "bbbbbb"], "xxbbbbbbyy", MASK),
])
def test_overlapping_values(values: list[str], text: str, shown: str, way: str) -> None:
    registry = RecentSecrets(limit=64)
    registry.add(values + [secrets.token_urlsafe(40) for _ in range(30)])  # past FEW
    with looked_for(way):
        assert registry.mask(text) == shown == reference(text, values)


class _Counted(str):
    """A text that counts the substring searches made in it."""

    searches = 0

    def __contains__(self, value: object) -> bool:
        _Counted.searches += 1
        return super().__contains__(value)  # type: ignore[operator]


def test_a_long_text_is_not_searched_for_each_of_many_values() -> None:
    """A 2,000-character text against a full ``CALLERS`` (1,024 JWTs) was searched
    1,024 times (~0.3 ms); now its slices are looked up every 32 characters and it is
    searched only for a value one of them belongs to."""
    header = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."   # one issuer's: shared
    jwts = [f"{header}{secrets.token_urlsafe(120)}.{secrets.token_urlsafe(43)}"
            for _ in range(1024)]
    registry = RecentSecrets(limit=1024, longest=16 * 1024)
    registry.add(jwts)
    plain = ("upstream 'github' answered tools/call in 12 ms: " * 45)[:2000]
    _Counted.searches = 0
    assert registry.mask(_Counted(plain)) == plain
    assert _Counted.searches == 0
    # The shared header in the text is no key (a JWT is keyed by its signature's end).
    assert registry.mask(_Counted(f"{plain[:1000]} {header}")) == f"{plain[:1000]} {header}"
    assert _Counted.searches == 0
    text = _Counted(f"{plain[:900]} Bearer {jwts[500]} {plain[:900]}")
    assert registry.mask(text) == f"{plain[:900]} Bearer {MASK} {plain[:900]}"
    assert _Counted.searches == 1
    assert stride_of(len(jwts[0])) == MAX_STRIDE


def test_dropped_values_leave_no_keys_behind() -> None:
    """The index is bounded with the registry: a value dropped takes its keys along,
    those it shares with a value still kept staying."""
    registry = RecentSecrets(limit=16)
    kept = "shared-suffix-0123456789abcdefghijklmnop"
    registry.add([kept])
    for n in range(500):
        registry.add([f"v{n}-" + secrets.token_hex(n % 40 + 3), f"{n}{kept}", kept])
    held: set[str] = set()
    for cls in registry._classes.values():
        for value in cls.keys.values():
            held.update((value,) if isinstance(value, str) else value)
    assert held <= set(registry._values) and kept in held and len(registry._values) == 16
    assert sum(len(cls.keys) for cls in registry._classes.values()) <= 16 * MAX_STRIDE


def test_values_added_and_dropped_while_another_thread_masks() -> None:
    """``add`` runs on the event loop, ``mask`` also in a logging or worker thread: a
    value kept all along is masked in every text, whatever is added and dropped
    meanwhile, and neither side fails."""
    registry = RecentSecrets(limit=64, longest=4096)
    pinned = "pinned-" + secrets.token_urlsafe(30)
    registry.add([pinned])
    done, failures = threading.Event(), []

    def churn() -> None:
        try:
            n = 0
            while not done.is_set():
                n += 1
                registry.add([secrets.token_urlsafe(n % 90 + 6) for _ in range(3)])
                registry.add([pinned])   # the newest again: never the one dropped
        except BaseException as exc:   # noqa: BLE001 - reported by the test
            failures.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)   # switch threads as often as the interpreter can
    writer = threading.Thread(target=churn)
    writer.start()
    try:
        for n in range(3000):
            text = f"line {n}: {'x' * (n % 300)}{pinned}{'y' * (n % 7)}"
            assert registry.mask(text) == f"line {n}: {'x' * (n % 300)}{MASK}{'y' * (n % 7)}"
    finally:
        done.set()
        writer.join()
        sys.setswitchinterval(interval)
    assert not failures


def test_masked_keeps_what_is_around_each_run() -> None:
    assert masked("a-xyz-b-xyz", ["xyz"], MASK) == f"a-{MASK}-b-{MASK}"
    assert masked("plain", ["absent"], MASK) == "plain"
    assert masked("aaaaaaa", ["aaaaaa"], MASK) == MASK
