"""An upstream of the mcp 1.x SDK that elicits in URL mode and says when the flow is done.

    python url_asker.py        (the Python of ``tests/py_tools.py``: mcp 1.x; stdio)

``sign_in(flow)`` asks the client to open a link (``elicitation/create``, mode ``url``,
``elicitationId`` = ``flow``) and answers with the action; ``needs_sign_in(flow)`` is
answered -32042 (URL elicitation required) naming ``flow``; ``finish(flow)`` sends
``notifications/elicitation/complete`` for ``flow`` on the session (outside any request,
as a server does once the browser flow it started is done).
"""

from __future__ import annotations

from mcp.server.fastmcp import Context, FastMCP
from mcp.shared.exceptions import UrlElicitationRequiredError
from mcp.types import ElicitRequestURLParams

mcp = FastMCP("url_asker")


@mcp.tool()
async def sign_in(flow: str, ctx: Context) -> str:
    result = await ctx.session.elicit_url("Sign in to continue.", f"https://example.com/{flow}",
                                          elicitation_id=flow,
                                          related_request_id=ctx.request_id)
    return result.action


@mcp.tool()
async def needs_sign_in(flow: str) -> str:
    raise UrlElicitationRequiredError([ElicitRequestURLParams(
        mode="url", message="Sign in first.", url=f"https://example.com/{flow}",
        elicitationId=flow)])


@mcp.tool()
async def finish(flow: str, ctx: Context) -> str:
    await ctx.session.send_elicit_complete(flow)
    return "finished"


if __name__ == "__main__":
    mcp.run("stdio")
