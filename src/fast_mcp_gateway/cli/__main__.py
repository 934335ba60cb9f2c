"""``python -m fast_mcp_gateway.cli`` (the older spelling of ``python -m fast_mcp_gateway``)."""

from fast_mcp_gateway.cli.main import main

raise SystemExit(main())
