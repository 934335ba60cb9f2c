"""Imported by the test servers when run as scripts: their interpreter exits without its
final garbage collection of everything FastMCP and pydantic imported.

That pass took ~0.3 s idle and 1-2 s on a loaded two-core machine, after the server had
already done everything it does on stdin EOF; a gateway stopping the server waited for
it, most often for its whole ``STOP_GRACE`` (1 s) and then a SIGTERM.  atexit handlers,
flushes and lifespans run as before; only the collection of what is still alive at exit
(which frees nothing the process could still use) is skipped.
"""

import atexit
import gc

atexit.register(gc.freeze)
