"""Operations on the gateway itself, transport-neutral, and their ``gateway_*`` MCP tools.

``servers``, ``routes``, ``history`` and ``inspector`` are plain async functions over an
``AdminContext`` (``context.py``) returning the models of ``models.py``; ``control.py``
is the gateway's implementation of that context (the control plane); ``mcp_tools.py``
adapts the operations to MCP, and ``listed.py`` lists those tools from their generated
definitions (``tools.json``) until one is called.  Of the MCP side, only ``mcp_tools``,
``listed`` and ``scope`` import FastMCP.
"""
