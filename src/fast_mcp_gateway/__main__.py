"""``python -m fast_mcp_gateway``: the ``mcp-gateway`` command line."""

from fast_mcp_gateway.cli.main import main

raise SystemExit(main())
