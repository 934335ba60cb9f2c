import anyio, httpx2, time, uvicorn, socket
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import OAuthClientMetadata, OAuthToken, OAuthClientInformationFull
from pydantic import AnyHttpUrl

arrived = []
release = anyio.Event()
async def slow(request):
    arrived.append((request.query_params.get("n"), time.monotonic()))
    if request.query_params.get("n") == "1":
        await release.wait()
    return JSONResponse({"ok": request.headers.get("authorization", "")[:12]})
app = Starlette(routes=[Route("/mcp", slow, methods=["POST"])])

class Store:
    async def get_tokens(self): return OAuthToken(access_token="AT-123456789", token_type="Bearer", expires_in=3600)
    async def set_tokens(self, t): pass
    async def get_client_info(self): return OAuthClientInformationFull(client_id="c", redirect_uris=[AnyHttpUrl("http://127.0.0.1:1/cb")])
    async def set_client_info(self, c): pass

async def main():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started: await anyio.sleep(0.01)
        for use_auth in (False, True):
            arrived.clear(); release = anyio.Event(); globals()["release"] = release
            auth = OAuthClientProvider(f"http://127.0.0.1:{port}/mcp",
                OAuthClientMetadata(redirect_uris=[AnyHttpUrl("http://127.0.0.1:1/cb")]), Store()) if use_auth else None
            async with httpx2.AsyncClient(auth=auth) as c:
                async def req(n):
                    r = await c.post(f"http://127.0.0.1:{port}/mcp?n={n}", json={})
                    return r.json()
                async with anyio.create_task_group() as g:
                    g.start_soon(req, 1)
                    await anyio.sleep(0.3)
                    g.start_soon(req, 2)
                    await anyio.sleep(1.0)
                    seen = [a[0] for a in arrived]
                    print(f"auth={'OAuthClientProvider' if use_auth else 'none'}: requests at server while #1 unanswered: {seen}")
                    release.set()
                print("  after release:", [a[0] for a in arrived])
        server.should_exit = True
anyio.run(main)
