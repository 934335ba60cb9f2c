"""Edges of a person's sign-in (``auth: {type: oauth}``, upstream/sign_in.py) found by
review28, end to end on 127.0.0.1 against fastmcp's in-memory authorization server
(tests/oauth_servers.py), as tests/test_oauth_sign_in.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp.exceptions import ToolError

from fast_mcp_gateway.upstream import oauth_grant
from fast_mcp_gateway.upstream.model import UpstreamState
from fast_mcp_gateway.upstream.oauth_grant import CredentialBook, RefreshGrant
from tests.fixtures import until
from tests.oauth_servers import person_signs_in, signing_upstream
from tests.test_oauth_sign_in import free_port, gateway, replica, running, state_is

pytestmark = pytest.mark.anyio

KEY = "k" * 40


async def test_two_sign_ins_at_once_share_one_link(tmp_path: Path) -> None:
    port = free_port()
    async with signing_upstream() as (provider, url):
        gw = gateway(url, tmp_path / "gateway.db", port)
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            links: list[str] = []

            async def ask() -> None:
                answer = await client.call_tool("gateway_sign_in", {"name": "tickets"})
                data: Any = answer.structured_content
                links.append(data["url"])
                # Loopback only, said (a gateway served over HTTP from another machine).
                assert data["callback"] == f"http://127.0.0.1:{port}/oauth/callback"
                assert f"The browser then comes back to http://127.0.0.1:{port}/oauth/" \
                       "callback on the gateway's machine: open the link there, or from " \
                       f"another machine forward that port first (ssh -L {port}:127.0.0.1:" \
                       f"{port} <the gateway's host>)." in data["message"]

            async with anyio.create_task_group() as tg:  # e.g. two hosts, one gateway
                tg.start_soon(ask)
                tg.start_soon(ask)
            assert links[0] == links[1]  # not a second flow orphaning the first's link
            assert len(provider.clients) == 1  # one registration
            page = await person_signs_in(links[0])
            assert page.status_code == 200, page.text
            await state_is(gw, UpstreamState.READY)


async def test_a_server_removed_and_added_back_is_signed_out(tmp_path: Path) -> None:
    async with signing_upstream() as (_provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            answer: Any = (await client.call_tool("gateway_sign_in", {"name": "tickets"}))
            await person_signs_in(answer.structured_content["url"])
            await state_is(gw, UpstreamState.READY)
            await client.call_tool("gateway_remove_server", {"name": "tickets"})
            store = gw.store
            assert store is not None and await store.credentials() == []
            await client.call_tool("gateway_add_server", {"name": "tickets", "config": {
                "url": url, "auth": {"type": "oauth"}}})
            # Its sign-in went with it: not the token the removed server held in memory.
            await state_is(gw, UpstreamState.SIGNED_OUT)
            assert "needs sign-in (no sign-in yet)" in str(replica(gw).last_error)


async def test_a_server_added_at_runtime_waits_for_its_sign_in(tmp_path: Path) -> None:
    async with signing_upstream() as (_provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            answer: Any = await client.call_tool("gateway_add_server", {
                "name": "linear", "config": {"url": url, "auth": {"type": "oauth"}}})
            report = answer.structured_content  # added (not taken back), and said why idle
            assert report["added"] == ["linear"]
            assert "signed_out: needs sign-in (no sign-in yet): call the gateway_sign_in " \
                   "tool with server 'linear'" in report["connect_failed"]["linear"]
            answer = await client.call_tool("gateway_sign_in", {"name": "linear"})
            await person_signs_in(answer.structured_content["url"])
            added = gw.manager.services["linear"].replicas[0]
            await until(lambda: added.state is UpstreamState.READY)
            assert (await client.call_tool("linear_add", {"a": 2, "b": 5})).data == 7


async def test_a_reload_changing_auth_or_url_does_not_use_the_old_sign_in(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oauth_grant, "RECHECK", 0.02)
    loads = 0
    load = CredentialBook.load

    async def counted(self: CredentialBook, server: str) -> Any:
        nonlocal loads
        loads += 1
        return await load(self, server)

    monkeypatch.setattr(CredentialBook, "load", counted)
    async with signing_upstream() as (_provider, url):
        config = tmp_path / "servers.yaml"
        entry = "servers:\n  tickets: {{url: '{url}', auth: {{type: oauth{more}}}}}\n"
        config.write_text(entry.format(url=url, more=""))
        gw = gateway(url, tmp_path / "gateway.db", free_port(), config=config)
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            answer: Any = await client.call_tool("gateway_sign_in", {"name": "tickets"})
            await person_signs_in(answer.structured_content["url"])
            await state_is(gw, UpstreamState.READY)
            config.write_text(entry.format(url=url, more=", scopes: [read]"))
            await gw.reload_config()
            await state_is(gw, UpstreamState.SIGNED_OUT)
            assert "needs sign-in (its stored sign-in was made before auth.scopes changed; " \
                   "sign in again)" in str(replica(gw).last_error)
            assert "made before auth.scopes changed: not used" in caplog.text
            read = loads
            await until(lambda: loads > read + 5)  # its row re-read while it waits...
            assert caplog.text.count("made before auth.scopes changed") == 1  # ...no retry
            answer = await client.call_tool("gateway_sign_in", {"name": "tickets"})
            await person_signs_in(answer.structured_content["url"])
            await state_is(gw, UpstreamState.READY)  # signed in under the new settings
            # Another URL (here the same server by another name): not sent the token.
            other = url.replace("127.0.0.1", "localhost")
            config.write_text(entry.format(url=other, more=", scopes: [read]"))
            await gw.reload_config()
            await state_is(gw, UpstreamState.SIGNED_OUT)
            assert "made before url changed" in str(replica(gw).last_error)


async def test_an_authorization_server_failing_at_a_refresh_is_waited_for_not_parked(
        tmp_path: Path) -> None:
    async with signing_upstream() as (provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            answer: Any = await client.call_tool("gateway_sign_in", {"name": "tickets"})
            await person_signs_in(answer.structured_content["url"])
            await state_is(gw, UpstreamState.READY)
            exchange = provider.exchange_refresh_token

            async def down(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("the authorization server fails")  # its HTTP 500

            provider.exchange_refresh_token = down  # type: ignore[method-assign]
            provider.access_tokens.clear()  # expired at the server: 401, then a refresh
            with pytest.raises(ToolError) as caught:  # not the SDK's bare JSON-RPC error
                await client.call_tool("tickets_add", {"a": 1, "b": 1})
            assert "tools/call 'add': the server refused the gateway's token (HTTP 401; the " \
                   "call was not run) and is restarting (" in str(caught.value)
            assert "answered HTTP 500 to a refresh" in str(caught.value)
            up = replica(gw)
            # Said as what it is (not 'the server refuses its authorization server's
            # tokens' and parked after three connects with the refused token).
            await until(lambda: up.last_error is not None
                        and "answered HTTP 500 to a refresh, not a token (" in str(up.last_error)
                        and "the sign-in is kept and the gateway tries again" in str(up.last_error))
            assert up.state in (UpstreamState.RECONNECTING, UpstreamState.STARTING)
            provider.exchange_refresh_token = exchange  # type: ignore[method-assign]
            await state_is(gw, UpstreamState.READY)  # by itself, signed in still
            assert (await client.call_tool("tickets_add", {"a": 2, "b": 2})).data == 4



async def test_two_gateways_refreshing_at_once_stay_signed_in(tmp_path: Path) -> None:
    """Gateways on one store (PostgreSQL, or a file) find the token due at once and both
    read the row before either refreshes: the authorization server rotates the refresh
    token for the first and refuses the second's (invalid_grant).  The second takes the
    first's tokens; it does not sign every gateway out."""
    db = tmp_path / "gateway.db"
    async with signing_upstream() as (_provider, url):
        gw = gateway(url, db, free_port(), credential_keys=KEY)
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            answer: Any = await client.call_tool("gateway_sign_in", {"name": "tickets"})
            await person_signs_in(answer.structured_content["url"])
            await state_is(gw, UpstreamState.READY)
            book = CredentialBook([KEY], str(db), lambda: gw.store)
            auth = gw.manager.services["tickets"].config.auth
            read = await book.load("tickets")  # what both gateways read
            assert read is not None
            first = await RefreshGrant("tickets", url, auth)._refresh(book, *read)
            second = await RefreshGrant("tickets", url, auth)._refresh(book, *read)
            assert second.access == first.access and second.refresh == first.refresh
            stored = await book.load("tickets")
            assert stored is not None and stored[1]["tokens"]["access_token"] == first.access


async def test_a_sign_in_that_could_not_be_kept_is_refused_before_the_link(
        tmp_path: Path) -> None:
    """The seal is made before the link is given: a key file others may read (or, on
    PostgreSQL, no MCP_GATEWAY_CREDENTIAL_KEYS) is said at gateway_sign_in (sec29: the
    person signed in at the authorization server first, and its page then said 'it did
    not finish in time')."""
    key = tmp_path / "credential.keys"
    key.write_text(KEY + "\n")
    key.chmod(0o644)
    async with signing_upstream() as (provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            up = replica(gw)  # failed, saying why (its token cannot be read either)
            await until(lambda: "may be read or written by other users" in str(up.last_error))
            with pytest.raises(ToolError) as caught:
                await client.call_tool("gateway_sign_in", {"name": "tickets"})
            assert f"upstream 'tickets': the credential key {key} may be read or written " \
                   f"by other users (mode 0644); it opens every stored sign-in: run " \
                   f"'chmod 600 {key}'" in str(caught.value)
            assert provider.clients == {}  # nothing registered, no link given


async def test_a_sign_in_the_store_could_not_keep_says_so_on_the_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def away(self: CredentialBook, *args: Any) -> None:
        from fast_mcp_gateway.store import StorageError

        raise StorageError("the database at db.example cannot be reached")

    async with signing_upstream() as (_provider, url):
        gw = gateway(url, tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            answer: Any = await client.call_tool("gateway_sign_in", {"name": "tickets"})
            monkeypatch.setattr(CredentialBook, "save", away)
            page = await person_signs_in(answer.structured_content["url"])
            assert page.status_code == 400
            assert "the sign-in could not be kept (the database at db.example cannot be " \
                   "reached); start it again." in page.text  # not 'did not finish in time'


async def test_a_sign_in_refused_by_its_server_does_not_show_the_key_in_its_url(
        tmp_path: Path) -> None:
    """Many services' MCP URL is the credential (``/s/<key>/mcp``): the words of a
    sign-in that fails name the URL masked, as every other error does (sec29: the
    answer to gateway_sign_in, and the callback page, showed the key)."""
    from tests.fixtures import alpha_server, serve_http

    key = "Zq8mB3xK9vT2pL7wR4nH"
    async with serve_http(alpha_server().http_app(path=f"/s/{key}/mcp"),
                          startup=False) as base:  # it asks for no sign-in
        gw = gateway(f"{base}/s/{key}/mcp", tmp_path / "gateway.db", free_port())
        async with running(gw) as client:
            await state_is(gw, UpstreamState.SIGNED_OUT)
            with pytest.raises(ToolError) as caught:
                await client.call_tool("gateway_sign_in", {"name": "tickets"})
            assert f"{base}/s/***/mcp did not ask for a sign-in (no 401); remove auth: " \
                   "from its entry if it needs none" in str(caught.value)
            assert key not in str(caught.value)
