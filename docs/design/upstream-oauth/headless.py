"""Headless sign-in against FastMCP + InMemoryOAuthProvider on 127.0.0.1, driven by the
SDK's OAuthClientProvider with a redirect handler that follows /authorize itself."""
import socket, anyio, httpx2, uvicorn
from urllib.parse import urlsplit, parse_qs
from fastmcp import FastMCP
from fastmcp.server.auth.providers.in_memory import InMemoryOAuthProvider
from mcp.server.auth.settings import ClientRegistrationOptions
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import OAuthClientMetadata, AuthorizationCodeResult
from pydantic import AnyHttpUrl

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
base = f"http://127.0.0.1:{port}"
provider = InMemoryOAuthProvider(base_url=base, client_registration_options=ClientRegistrationOptions(enabled=True, valid_scopes=["read"], default_scopes=["read"]), required_scopes=["read"])
mcp = FastMCP("up", auth=provider)
@mcp.tool
def hello() -> str: return "hi"
app = mcp.http_app(path="/mcp")

class Mem:
    tokens = client = None
    async def get_tokens(self): return self.tokens
    async def set_tokens(self, t): self.tokens = t
    async def get_client_info(self): return self.client
    async def set_client_info(self, c): self.client = c

async def main():
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started: await anyio.sleep(0.01)
        got = {}
        async def redirect(url):            # the "person": follow /authorize without a browser
            async with httpx2.AsyncClient() as c:
                r = await c.get(url, follow_redirects=False)
            q = parse_qs(urlsplit(r.headers["location"]).query)
            got.update(code=q["code"][0], state=q["state"][0], iss=q.get("iss", [None])[0])
        async def callback():
            return AuthorizationCodeResult(code=got["code"], state=got["state"], iss=got["iss"])
        store = Mem()
        auth = OAuthClientProvider(f"{base}/mcp", OAuthClientMetadata(
            client_name="gw", redirect_uris=[AnyHttpUrl("http://127.0.0.1:9/callback")],
            grant_types=["authorization_code", "refresh_token"], response_types=["code"],
            token_endpoint_auth_method="none"), store, redirect, callback)
        async with httpx2.AsyncClient(auth=auth) as c:
            r = await c.post(f"{base}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                             headers={"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"})
        print("probe status", r.status_code)
        print("token kept:", bool(store.tokens and store.tokens.access_token), "refresh:", bool(store.tokens.refresh_token), "expires_in:", store.tokens.expires_in)
        print("client registered:", store.client.client_id[:6] + "...", "issuer:", store.client.issuer)
        print("AS metadata token_endpoint:", auth.context.oauth_metadata.token_endpoint)
        print("provider holds access tokens:", len(provider.access_tokens))
        provider.access_tokens.clear()    # 'expiry' without a clock: the next request is a 401
        async with httpx2.AsyncClient() as c:
            r2 = await c.post(f"{base}/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "ping"},
                              headers={"authorization": f"Bearer {store.tokens.access_token}", "accept": "application/json, text/event-stream"})
        print("after clearing the provider's tokens:", r2.status_code, r2.headers.get("www-authenticate", "")[:90])
        server.should_exit = True
anyio.run(main)
