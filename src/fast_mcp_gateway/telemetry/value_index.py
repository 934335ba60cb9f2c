"""Masking many known values in a text, in time that does not grow with their number.

For ``telemetry/redaction.py``'s ``RecentSecrets`` (the last 1,024 callers' tokens, the
last 256 credential arguments).  Searching a text for each value cost one substring
search per value -- ~0.3 ms for a 2,000-character text against 1,024 JWTs, on every
text the gateway masks -- and one compiled alternation of them all took 1.7 s to
build, at each new value.

``ValueIndex`` keys each value by ``stride`` consecutive ``GRAM``-character slices of
its end, ``stride`` a power of two at most the value's length less ``GRAM`` plus one
(capped at ``MAX_STRIDE``).  Any occurrence of the value in a text then covers a slice
starting at a multiple of ``stride``, and that slice is one of those keys: reading the
text's slices at every ``stride``-th position finds every value it holds, inside a
longer run or not, each candidate then confirmed by a substring search.  Values are
kept per stride (a class each), so a registry of long tokens is read every 32
characters whatever a short one's stride is.  Keyed by their *end*, not their start:
JWTs of one issuer share their first 36+ characters (the header, often the first
claims), so that keys by the start would put every one of them under the same slices;
their ends are their signatures.

A few values, or a text shorter than most, are cheaper searched value by value: ``mask``
does so for up to ``FEW`` values no longer than the text, or while that costs less
than reading it (``_index_pays``), and else weighs both class by class (``_indexed``).
Every character of every occurrence is masked, overlapping ones as one replacement
(``masked``).  Adding or dropping a value costs ``stride`` dict operations and a copy
of the sorted values (~30-45 us into 1,024; a sort of them all before, ~50-75 us).

Writers hold their owner's lock; readers never lock: the sorted values are swapped
whole, the slices' dicts are only ever looked up by readers, and a value's keys are
added before it is listed and removed after it is not.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

GRAM = 6
"""Characters per key: the shortest value ``RecentSecrets`` keeps."""
MAX_STRIDE = 32
"""32 keys per value at most (~2.8 MB for 1,024 JWTs; 64 would halve the reading of a
text and double that); a JWT's last 37 characters are its signature's."""
FEW = 8
"""Up to this many values no longer than a text are searched one by one, as they all
were: cheaper than reading even a long text at ``MAX_STRIDE``."""
# CPU per substring search of an n-character text: ~15 ns + n / (characters per ns):
# shorter values are searched slower (CPython 3.11, base64 values in log-like text: 6
# characters ~0.35 ns per character of text, 13-20 ~0.16, 37-64 ~0.09, JWTs ~0.06).
# Reading a slice of the text at a stride and looking it up: ~78 ns; ~150 ns more per
# class read; ~150 ns per class looked at, either way (500 counted: the choice per class
# is rough near where both cost the same).
_SEARCH = 15
_CHARS_PER_NS = {1: 3, 2: 3, 4: 4, 8: 6, 16: 8, 32: 12}
_READ = 78
_READ_SETUP = 150
_PER_CLASS = 500


def stride_of(length: int) -> int:
    """The stride a value of ``length`` characters is indexed at (``GRAM`` or longer)."""
    most = min(MAX_STRIDE, length - GRAM + 1)
    return 1 << (most.bit_length() - 1)


class _Sorted:
    """Values sorted longest first, with their negated lengths (for ``bisect``), in two
    lists; ``snapshot``: the two as tuples, for readers."""

    def __init__(self) -> None:
        self._values: list[str] = []
        self._lengths: list[int] = []

    def add(self, value: str) -> None:
        at = bisect.bisect_right(self._lengths, -len(value))
        self._values.insert(at, value)
        self._lengths.insert(at, -len(value))

    def remove(self, value: str) -> None:
        at = self._values.index(value, bisect.bisect_left(self._lengths, -len(value)))
        del self._values[at], self._lengths[at]

    def snapshot(self) -> tuple[tuple[str, ...], tuple[int, ...]]:
        return tuple(self._values), tuple(self._lengths)

    def __len__(self) -> int:
        return len(self._values)


_Reading = tuple[int, int, tuple[str, ...], tuple[int, ...],
                 Callable[[str], "str | tuple[str, ...] | None"]]
"""A class as readers see it: its stride, ``_CHARS_PER_NS``, its values and their
negated lengths, and its keys' ``get``."""


class _Class:
    """The values of one stride (``members``), and the values each of their keys is a
    slice of (one, or a tuple when they share it)."""

    def __init__(self, stride: int) -> None:
        self.stride = stride
        self.members = _Sorted()
        self.keys: dict[str, str | tuple[str, ...]] = {}

    def reading(self) -> _Reading:
        return (self.stride, _CHARS_PER_NS[self.stride], *self.members.snapshot(),
                self.keys.get)

    def grams(self, value: str) -> set[str]:
        start = len(value) - GRAM - self.stride + 1
        return {value[i:i + GRAM] for i in range(start, start + self.stride)}

    def insert(self, value: str) -> None:
        keys = self.keys
        for gram in self.grams(value):
            held = keys.get(gram)
            keys[gram] = value if held is None else (
                (held, value) if isinstance(held, str) else (*held, value))

    def remove(self, value: str) -> None:
        keys = self.keys
        for gram in self.grams(value):
            held = keys.get(gram)
            if held == value:
                del keys[gram]
            elif isinstance(held, tuple):
                rest = tuple(v for v in held if v != value)
                keys[gram] = rest[0] if len(rest) == 1 else rest


class ValueIndex:
    """Known values (each ``GRAM`` characters or longer, each added once), masked as
    ``replacement`` in a text (``mask``)."""

    def __init__(self, replacement: str) -> None:
        self.replacement = replacement
        self._all = _Sorted()
        self._classes: dict[int, _Class] = {}
        # For readers, each swapped whole: every value sorted (``_Sorted.snapshot``)
        # and where the last ``FEW`` start; the classes with values; the ns per
        # character of text a search of a value costs on average (``_index_pays``).
        self._by_length: tuple[tuple[str, ...], tuple[int, ...], int] = ((), (), 0)
        self._reading: tuple[_Reading, ...] = ()
        self._per_char = 0.0
        self._completable = 0   # values holding a character of ``replacement``

    def update(self, added: Iterable[str], dropped: Iterable[str]) -> None:
        """Index ``added`` (none known) and forget ``dropped`` (each known, not in
        ``added``).  Not thread-safe: one writer at a time."""
        gone: list[tuple[_Class, str]] = []
        for value in added:
            stride = stride_of(len(value))
            cls = self._classes.get(stride) or self._classes.setdefault(stride, _Class(stride))
            cls.insert(value)   # keyed before it is listed
            cls.members.add(value)
            self._all.add(value)
            self._completable += self._completes(value)
        for value in dropped:
            cls = self._classes[stride_of(len(value))]
            cls.members.remove(value)
            self._all.remove(value)
            self._completable -= self._completes(value)
            gone.append((cls, value))
        values, lengths = self._all.snapshot()
        self._reading = tuple(c.reading() for _, c in sorted(self._classes.items())
                              if c.members)
        self._per_char = sum(len(c.members) / _CHARS_PER_NS[c.stride]
                             for c in self._classes.values()) / max(1, len(values))
        self._by_length = values, lengths, len(values) - FEW
        for cls, value in gone:   # no longer listed: its keys go
            cls.remove(value)

    def _completes(self, value: str) -> bool:
        return any(c in value for c in self.replacement)

    def mask(self, text: str) -> str:
        """``text`` with each value it holds as ``replacement`` (``masked``).  Readers
        never lock: a value added before ``mask`` starts is masked, one added or
        dropped meanwhile may be or not."""
        values, lengths, few = self._by_length
        fits = bisect.bisect_left(lengths, -len(text))   # the first no longer than it
        if fits < few and self._index_pays(len(values) - fits, len(text)):
            found = self._indexed(text)
            return self._masked(text, found) if found else text
        for value in values[fits:]:   # the usual case, as cheap as it was
            if value in text:
                return self._masked(text, _held(text, values, values.index(value, fits)))
        return text

    def _masked(self, text: str, found: list[str]) -> str:
        while found:
            text = masked(text, found, self.replacement)
            # A value holding a character of the replacement may appear across one
            # just put in: masked in turn (each round shortens the text: values are
            # longer than the replacement).
            found = self.found(text) if self._completable else []
        return text

    def found(self, text: str) -> list[str]:
        """The values ``text`` holds, each once (none: an empty list)."""
        values, lengths, few = self._by_length
        fits = bisect.bisect_left(lengths, -len(text))
        if fits < few and self._index_pays(len(values) - fits, len(text)):
            return self._indexed(text)
        return [value for value in values[fits:] if value in text]

    def _index_pays(self, count: int, size: int) -> bool:
        """Whether looking class by class is cheaper than searching a text of ``size``
        characters for ``count`` values one by one."""
        return count * (_SEARCH + size * self._per_char) > (
            _PER_CLASS * len(self._reading) + _READ * ((size - GRAM) // MAX_STRIDE + 1))

    def _indexed(self, text: str) -> list[str]:
        """``found``, class by class: each read at its stride, or its values no longer
        than the text searched one by one, whichever is cheaper."""
        size = len(text)
        found: list[str] = []
        for stride, per_ns, values, lengths, get in self._reading:
            fitting = values[bisect.bisect_left(lengths, -size):]
            if not fitting:
                continue   # all longer than the text
            reads = (size - GRAM) // stride + 1
            if len(fitting) * (_SEARCH + size // per_ns) <= _READ_SETUP + _READ * reads:
                for value in fitting:
                    if value in text:
                        found.append(value)
                continue
            hits = []
            for start in range(0, size - GRAM + 1, stride):
                held = get(text[start:start + GRAM])
                if held is not None:
                    hits.append(held)
            if hits:
                found += _confirmed(text, hits)
        return found


def _held(text: str, values: tuple[str, ...], first: int) -> list[str]:
    """``values[first]``, which ``text`` holds, and those after it it holds (each
    searched once)."""
    rest = values[first + 1:]
    return [values[first], *(v for v in rest if v in text)] if rest else [values[first]]


def _confirmed(text: str, hits: list[str | tuple[str, ...]]) -> list[str]:
    """The candidates of ``hits`` that ``text`` holds (a key is shared, or is in the
    text by chance), each once."""
    seen: set[str] = set()
    for held in hits:
        seen.update((held,) if isinstance(held, str) else held)
    return [value for value in seen if value in text]


def masked(text: str, values: Iterable[str], mask: str) -> str:
    """``text`` with every occurrence of each of ``values`` as ``mask``: overlapping
    occurrences (of one value or of two) as one ``mask``, so no character of any is
    left; adjacent ones as one ``mask`` each."""
    spans = []
    for value in values:
        at, last = text.find(value), len(text) - len(value)   # ``last``: the last start
        while at >= 0:
            spans.append((at, at + len(value)))
            at = text.find(value, at + 1) if at < last else -1
    if len(spans) < 2:   # the usual case: one value, once
        return f"{text[:spans[0][0]]}{mask}{text[spans[0][1]:]}" if spans else text
    spans.sort()
    parts, kept = [], 0   # ``kept``: where the text not masked yet starts
    start, end = spans[0]
    for begin, finish in spans[1:]:
        if begin < end:   # overlaps the run being masked
            end = max(end, finish)
            continue
        parts += [text[kept:start], mask]
        kept, start, end = end, begin, finish
    parts += [text[kept:start], mask, text[end:]]
    return "".join(parts)
