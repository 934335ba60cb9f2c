"""What masking the recent secrets' registries costs (``CALLERS``, ``RECENT``): a text
masked against a registry of each size, before (one substring search per value no
longer than the text, as ``RecentSecrets.mask`` did to b9a156f) and after
(``telemetry/value_index.py``).

    python benchmarks/masking.py [--kind jwt|mixed|both] [--repeat 5]

``jwt``: one issuer's JWTs (shared header, 250-700 characters: ``CALLERS``); ``mixed``:
passwords and tokens of 6 to 64 characters (``RECENT``).  For each registry size and
text length: microseconds per ``mask`` of a log-like text holding no value (the usual
case) and of the same text holding one value, before and after (the best of
``--repeat`` runs of each, interleaved), and after/before.  Then what adding a new
value to a full registry costs, and the registry's memory (tracemalloc).  Times are
the process's CPU time: other processes on a busy machine inflate wall times.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import json
import random
import secrets
import time
import tracemalloc
from collections.abc import Callable

from fast_mcp_gateway.telemetry.redaction import MASK, RecentSecrets

SIZES = (1, 4, 16, 64, 256, 1024)
LENGTHS = (30, 200, 2000, 20000)
WORDS = ("upstream", "session", "replica", "error:", "call", "tools/call", "took", "ms",
         "ready", "github", "search", "id=42", "name", "retry", "the", "a", "of", "in")


class Before:
    """``RecentSecrets`` as it was: values sorted longest first, one substring search
    each (those no longer than the text)."""

    def __init__(self, values: list[str]) -> None:
        ordered = tuple(sorted(values, key=len, reverse=True))
        self._by_length = ordered, tuple(-len(v) for v in ordered)

    def add(self, values: list[str]) -> None:   # what ``add`` did per new value
        merged = tuple(sorted((*self._by_length[0], *values), key=len, reverse=True))
        self._by_length = merged, tuple(-len(v) for v in merged)

    def mask(self, text: str) -> str:
        values, lengths = self._by_length
        for value in values[bisect.bisect_left(lengths, -len(text)):]:
            if value in text:
                text = text.replace(value, MASK)
        return text


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(rng: random.Random) -> str:
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}).encode())
    claims = {"iss": "https://idp.example.test", "aud": "mcp-gateway",
              "sub": f"user-{rng.randrange(10**6)}", "iat": 1764547200 + rng.randrange(10**5),
              "scope": " ".join(rng.choices(WORDS, k=rng.randrange(2, 30)))}
    signature = _b64(rng.randbytes(rng.choice((32, 64, 256))))
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def mixed(rng: random.Random) -> str:
    return secrets.token_urlsafe(64)[:rng.randrange(6, 65)]


def text_of(length: int, rng: random.Random) -> str:
    words: list[str] = []
    while sum(map(len, words)) + len(words) < length:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:length]


def paired_us(before: Callable[[str], str], after: Callable[[str], str], text: str,
              repeat: int) -> tuple[float, float]:
    """The best of ``repeat`` runs of each, interleaved, in microseconds per call."""
    counts = []
    for mask in (before, after):
        loops, took = 1, 0.0
        while took < 0.01:   # enough loops for ~10 ms a run
            loops *= 2
            start = time.process_time()
            for _ in range(loops):
                mask(text)
            took = time.process_time() - start
        counts.append(loops)
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for side, (mask, loops) in enumerate(zip((before, after), counts, strict=True)):
            start = time.process_time()
            for _ in range(loops):
                mask(text)
            best[side] = min(best[side], (time.process_time() - start) / loops * 1e6)
    return best[0], best[1]


def after_of(values: list[str]) -> RecentSecrets:
    registry = RecentSecrets(limit=1024, longest=16 * 1024)
    registry.add(values)
    return registry


def table(kind: str, make: Callable[[random.Random], str], repeat: int) -> None:
    rng = random.Random(7)
    print(f"\n{kind}: us per mask (no value in the text | one value in it)")
    print(f"{'values':>6} {'chars':>6} | {'before':>9} {'after':>9} {'ratio':>6} |"
          f" {'before':>9} {'after':>9} {'ratio':>6}")
    pool = [make(rng) for _ in range(max(SIZES) + 1)]
    for size in SIZES:
        values = pool[:size]
        before, after = Before(values), after_of(values)
        for length in LENGTHS:
            plain = text_of(length, rng)
            fitting = [v for v in values if len(v) <= length // 2]
            held = None
            if fitting:
                value = rng.choice(fitting)
                cut = rng.randrange(len(plain) - len(value) + 1)
                held = plain[:cut] + value + plain[cut + len(value):]
                assert value not in after.mask(held)
            cells = []
            for text in (plain, held):
                if text is None:
                    cells.append(f"{'-':>9} {'-':>9} {'':>6}")
                    continue
                old, new = paired_us(before.mask, after.mask, text, repeat)
                cells.append(f"{old:9.2f} {new:9.2f} {new / old:6.2f}")
            print(f"{size:>6} {length:>6} | {cells[0]} | {cells[1]}")
    full = pool[:1024]
    before, after = Before(full), after_of(full)
    fresh = [make(rng) for _ in range(50)]
    start = time.process_time()
    for value in fresh[:25]:
        before.add([value])
    old = (time.process_time() - start) / 25 * 1e6
    start = time.process_time()
    for value in fresh[25:]:
        after.add([value])
    new = (time.process_time() - start) / 25 * 1e6
    print(f"adding a new value to a full registry (1,024): before {old:.0f} us, "
          f"after {new:.0f} us")
    for name, build in (("before", Before), ("after", after_of)):
        tracemalloc.start()
        kept = build(full)
        memory = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del kept
        print(f"memory of a full registry beyond its values, {name}: "
              f"{memory / 1024:.0f} KiB (values: {sum(map(len, full)) / 1024:.0f} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("jwt", "mixed", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.kind in ("jwt", "both"):
        table("jwt", jwt, args.repeat)
    if args.kind in ("mixed", "both"):
        table("mixed", mixed, args.repeat)


if __name__ == "__main__":
    main()
