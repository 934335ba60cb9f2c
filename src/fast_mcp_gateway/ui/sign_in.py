"""The dashboard's Sign in button: a server with ``auth: {type: oauth}`` that is
``signed_out`` (docs/design/upstream-oauth.md 3a, door 3).

``POST /ui/servers/{name}/sign-in`` (scope ``admin``, CSRF, refused under
``read_only`` as every change is) starts the sign-in (``SignIns.start``: the same
pending one while it waits, whoever started it: the admin tool, a host's URL
elicitation, ``mcp-gateway login`` in this process) and answers the server's page with
the link to open in a new tab; the browser comes back to the gateway's loopback
callback, and the page's live updates (``_status.html``, ``gw-live``) show the state
leave ``signed_out``.  The link carries the flow's ``state`` and PKCE challenge: it goes
into this admin's page only; the audit entry says "link given".
"""

from __future__ import annotations

import time

from starlette.responses import Response
from starlette.routing import Route

from fast_mcp_gateway.errors import GatewayError
from fast_mcp_gateway.ui.core import Page, Ui
from fast_mcp_gateway.ui.pages import detail_context, server_name
from fast_mcp_gateway.upstream.sign_in import current_sign_ins
from fast_mcp_gateway.upstream.sign_in_page import valid_for


async def start(page: Page) -> Response:
    name = server_name(page, page.request.path_params["name"])
    sign_ins = current_sign_ins()
    if sign_ins is None:
        return page.ui.error(page.request, page.viewer, 409, "This gateway keeps no "
                             f"sign-ins; run 'mcp-gateway login {name}'.")
    try:
        pending = await sign_ins.start(page.ctx.manager.get(name).config, page.actor.id)
    except GatewayError as exc:
        return page.render("server.html", 409, flash=f"Cannot sign in: {exc}",
                           **await detail_context(page, name))
    await page.ctx.audit(page.actor, "sign_in", name, None, "link given")
    return page.render(
        "server.html", sign_in={"url": pending.url,
                                "valid": valid_for(pending.expires_at, time.time()),
                                "callback": sign_ins.redirect_uri},
        flash=f"Sign-in to '{name}' started: open the sign-in link below.",
        **await detail_context(page, name))


def routes(ui: Ui) -> list[Route]:
    return [Route("/servers/{name}/sign-in", ui.page(start, scope="admin", mutate=True),
                  methods=["POST"])]
