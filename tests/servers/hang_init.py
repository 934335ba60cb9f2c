"""A stdio upstream that never answers initialize (reads stdin and ignores it)."""

import sys

print("hang: reading forever", file=sys.stderr, flush=True)
for _line in sys.stdin:
    pass
