"""``python -m fast_mcp_gateway``: the ``mcp-gateway`` command line."""

import atexit
import gc

from fast_mcp_gateway.cli.main import main

# The process ends with the command: its interpreter skips the final collection of all
# it imported (~0.4 s of CPU for `pins`, `logs`, `check`; `serve` froze its imports).
atexit.register(gc.freeze)
raise SystemExit(main())
