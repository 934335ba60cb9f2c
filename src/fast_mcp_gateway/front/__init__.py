"""What hosts talk to: the FastMCP server adapter, the hub of connected hosts, the
catalog provider and its components, the stdio front and the stdio express lane."""
