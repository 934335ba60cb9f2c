"""The HTTP service: cancelled calls recorded as such, the JWT verification cache, and
the HTTP front's edges (401/403 bodies and challenges, RFC 9728, limits), over real
HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from prometheus_client.parser import text_string_to_metric_families

from fast_mcp_gateway import Gateway, GatewaySettings
from fast_mcp_gateway.config.auth import AuthConfig
from fast_mcp_gateway.http.access import BAD_TOKEN, NO_TOKEN, bad_token, no_token
from fast_mcp_gateway.http.auth import JWT_CACHE_SECONDS, GatewayVerifier, principal_of
from tests.fixtures import (
    alpha_server,
    beta_server,
    interactive_server,
    make_gateway,
    memory_entry,
    serve_http,
)
from tests.test_auth_tokens import jwks  # noqa: F401 - the JWKS endpoint fixture
from tests.test_mcp_auth import serving

pytestmark = pytest.mark.anyio

MODES = ["2026-07-28", "legacy"]


def cancelled_calls(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if (sample.name == "mcp_gateway_calls_total"
                    and sample.labels.get("status") == "cancelled"):
                return sample.value
    return 0.0


@pytest.mark.parametrize("mode", MODES)
async def test_a_call_the_host_cancels_is_recorded_cancelled_not_failed(
    tmp_path: Path, mode: str,
) -> None:
    events = {"started": anyio.Event(), "cancelled": anyio.Event()}
    gateway = make_gateway({"inter": memory_entry("inter"), "alpha": memory_entry("alpha")},
                           {"inter": interactive_server(events), "alpha": alpha_server()},
                           db=str(tmp_path / "store.db"))
    async with serve_http(gateway.http_app("http")) as base:
        async with Client(f"{base}/mcp", mode=mode) as client:
            assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.call_tool_mcp, "inter_wait_for_cancel", {})
                with anyio.fail_after(30):
                    await events["started"].wait()
                tg.cancel_scope.cancel()  # the host gives up on the call
            with anyio.fail_after(30):
                await events["cancelled"].wait()  # ... and the upstream was told

        async with httpx2.AsyncClient(base_url=base) as http:
            async def cancelled_records() -> list[dict[str, Any]]:
                page = await http.get("/api/v1/logs/invocations",
                                      params={"status": "cancelled"})
                assert page.status_code == 200, page.text
                return list(page.json()["calls"])

            with anyio.fail_after(30):
                # The record is queued as the cancellation passes the pipeline, which
                # may be just after the upstream saw it: polled over REST (no event).
                while not (records := await cancelled_records()):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            (record,) = records
            assert record["exposed"] == "inter_wait_for_cancel"
            assert record["status"] == "cancelled"
            assert "cancelled" in record["error"]
            # The replica it was on (most often, the one that hung) is named: it was not.
            assert record["replica"] == "inter"
            assert record["route"] == [{"replica": "inter", "outcome": "cancelled"}]
            stats = (await http.get("/api/v1/stats/overview")).json()
            groups = {g["key"]: g for g in stats["groups"]}
            assert groups["inter"]["count"] == 1
            assert groups["inter"]["cancelled"] == 1
            assert groups["inter"]["errors"] == 0  # cancelled is not a failure
            assert groups["inter"]["success_rate"] is None  # no call finished there
            assert groups["alpha"]["cancelled"] == 0 and groups["alpha"]["errors"] == 0
            scrape = await http.get("/metrics")
            assert cancelled_calls(scrape.text) == 1.0


# -- the JWT verification cache -------------------------------------------------------------


ISSUER = "https://idp.test/"


def jwt_verifier(uri: str, clock: Any, size: int = 4096) -> tuple[GatewayVerifier, list[str]]:
    """A verifier for JWTs from ``uri``, and the tokens its JWT check really verified."""
    config = AuthConfig.model_validate({"jwt": {"jwks_uri": uri, "issuer": ISSUER,
                                                "audience": "mcp-gateway"}})
    verifier = GatewayVerifier(config, clock=clock, jwt_cache_size=size)
    checked: list[str] = []

    def spied(inner: Any) -> Any:
        real = inner.verify_token

        async def spy(token: str) -> Any:
            checked.append(token)
            return await real(token)

        inner.verify_token = spy
        return inner

    assert verifier._jwt is not None and verifier._rotation is not None
    spied(verifier._jwt)
    make = verifier._rotation._make  # the fresh verifiers of later keys too (jwt_keys)
    verifier._rotation._make = lambda: spied(make())
    return verifier, checked


def signed(pair: RSAKeyPair, subject: str = "bob", **kw: Any) -> str:
    return pair.create_token(subject=subject, issuer=ISSUER, audience="mcp-gateway",
                             kid="k1", scopes=["tools"], **kw)


async def test_a_verified_jwt_is_served_from_the_cache_until_it_expires(
    jwks: tuple[RSAKeyPair, str],  # noqa: F811 - the fixture
) -> None:
    pair, uri = jwks
    now = [time.time()]
    verifier, checked = jwt_verifier(uri, lambda: now[0])
    token = signed(pair, expires_in_seconds=3600)
    first = await verifier.verify_token(token)
    again = await verifier.verify_token(token)
    assert first is not None and again is not None
    assert principal_of(again) == principal_of(first)
    assert checked == [token]  # the signature was checked once
    assert first.expires_at is not None
    now[0] = first.expires_at + 1  # past its exp: refused, never served from the cache
    assert await verifier.verify_token(token) is None
    assert checked == [token, token]
    assert verifier.jwt_cache_len == 0


async def test_the_jwt_cache_holds_a_token_at_most_a_minute_and_never_a_refusal(
    jwks: tuple[RSAKeyPair, str],  # noqa: F811 - the fixture
) -> None:
    pair, uri = jwks
    now = [time.time()]
    verifier, checked = jwt_verifier(uri, lambda: now[0])
    token = signed(pair, expires_in_seconds=3600)
    assert await verifier.verify_token(token) is not None
    now[0] += JWT_CACHE_SECONDS + 1  # e.g. its key was dropped from the JWKS meanwhile
    assert await verifier.verify_token(token) is not None
    assert checked == [token, token]  # checked again, not taken on trust
    stranger = RSAKeyPair.generate().create_token(subject="eve", issuer=ISSUER,
                                                  audience="mcp-gateway", kid="k1")
    for _ in range(2):
        assert await verifier.verify_token(stranger) is None
    assert checked.count(stranger) == 2
    assert verifier.jwt_cache_len == 1


async def test_the_jwt_cache_is_bounded(
    jwks: tuple[RSAKeyPair, str],  # noqa: F811 - the fixture
) -> None:
    pair, uri = jwks
    verifier, checked = jwt_verifier(uri, time.time, size=3)
    tokens = [signed(pair, subject=f"user{i}") for i in range(5)]
    for token in tokens:
        assert await verifier.verify_token(token) is not None
    assert verifier.jwt_cache_len == 3
    assert await verifier.verify_token(tokens[-1]) is not None  # recent: cached
    assert await verifier.verify_token(tokens[0]) is not None  # oldest: dropped, checked
    assert checked == [*tokens, tokens[0]]
    assert verifier.jwt_cache_len == 3


async def test_a_principal_is_remembered_as_long_as_its_jwt_is_cached(
    jwks: tuple[RSAKeyPair, str],  # noqa: F811 - the fixture
) -> None:
    pair, uri = jwks
    now = [time.time()]
    verifier, checked = jwt_verifier(uri, lambda: now[0])
    token = signed(pair, expires_in_seconds=3600)
    first = await verifier.principal(token)
    assert first is not None and first.name == "bob" and first.scopes == {"tools"}
    assert await verifier.principal(token) is first and checked == [token]
    now[0] += JWT_CACHE_SECONDS + 1  # the JWT cache's bound holds for principals too
    assert await verifier.principal(token) == first
    assert checked == [token, token]
    # Expires 90 s after it was signed, i.e. ~29 s after the clock's present.
    short = signed(pair, subject="carol", expires_in_seconds=90)
    assert await verifier.principal(short) is not None
    now[0] += 31  # past its exp (before the minute): refused, never served from memory
    assert await verifier.principal(short) is None
    assert checked.count(short) == 2


async def test_a_static_tokens_principal_is_remembered_and_a_refusal_is_not() -> None:
    tokens = ["mgw_" + c * 40 for c in "abc"]
    config = AuthConfig.model_validate({"tokens": [
        {"name": f"t{i}", "sha256": hashlib.sha256(t.encode()).hexdigest(),
         "scopes": ["tools"], "servers": ["alpha"]} for i, t in enumerate(tokens)]})
    verifier = GatewayVerifier(config, jwt_cache_size=2)
    first = await verifier.principal(tokens[0])
    assert first is not None and first.name == "t0" and first.servers == {"alpha"}
    assert first.kind == "token"
    assert await verifier.principal(tokens[0]) is first
    for token in tokens:  # bounded like the JWT cache: the oldest goes first
        assert await verifier.principal(token) is not None
    assert len(verifier._principals) == 2 and await verifier.principal(tokens[0]) == first
    assert await verifier.principal("mgw_" + "z" * 40) is None
    assert all(p.name != "z" for (p, _), _ in verifier._principals.values())


# -- token rotation -------------------------------------------------------------------------


async def test_a_reload_rotates_the_tokens_without_a_restart(tmp_path: Path) -> None:
    old, new = "mgw_" + "o" * 40, "mgw_" + "n" * 40

    def write(token: str) -> None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        path.write_text(textwrap.dedent(f"""\
            gateway:
              auth:
                tokens:
                  - name: ops
                    sha256: {digest}
                    scopes: [admin]
            servers: {{}}
            """))

    path = tmp_path / "servers.yaml"
    write(old)
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    async with serve_http(gateway.http_app("http")) as base, \
            httpx2.AsyncClient(base_url=base) as http:
        async def rest(token: str) -> int:
            answer = await http.get("/api/v1/servers",
                                    headers={"Authorization": f"Bearer {token}"})
            return answer.status_code

        async def mcp(token: str) -> bool:
            try:
                async with Client(f"{base}/mcp", auth=token) as client:
                    await client.list_tools()
                return True
            except Exception:  # noqa: BLE001 - a refused connection, whatever its shape
                return False

        assert (await rest(old), await rest(new)) == (200, 401)
        assert await mcp(old) and not await mcp(new)
        write(new)
        report = await gateway.reload_config()
        assert report.error is None
        assert (await rest(old), await rest(new)) == (401, 200)
        assert await mcp(new) and not await mcp(old)


async def test_a_token_a_reload_removed_is_told_so_mid_session(tmp_path: Path) -> None:
    """An MCP session open under a token a reload then removes: its next request's 401
    says the token was removed by a reload (REST's too); a token never held keeps the
    generic words, so a caller learns nothing of tokens it never had."""
    old, kept = "mgw_" + "o" * 40, "mgw_" + "k" * 40

    def write(*tokens: str) -> None:
        entries = "".join(f"""
              - name: t{i}
                sha256: {hashlib.sha256(t.encode()).hexdigest()}
                scopes: [admin]""" for i, t in enumerate(tokens))
        path.write_text(f"gateway:\n  auth:\n    tokens:{entries}\nservers: {{}}\n")

    path = tmp_path / "servers.yaml"
    write(old, kept)
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    headers = {"Accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}}
    async with serve_http(gateway.http_app("http")) as base, \
            httpx2.AsyncClient(base_url=base) as http:
        opened = await http.post("/mcp", json=init,
                                 headers=headers | {"Authorization": f"Bearer {old}"})
        assert opened.status_code == 200
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"],
                   "Mcp-Protocol-Version": "2025-06-18"}
        write(kept)
        assert (await gateway.reload_config()).error is None
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        removed_words = "a config reload removed it from gateway.auth.tokens"
        for token, told in ((old, True), ("mgw_" + "x" * 40, False)):
            sent = headers | session | {"Authorization": f"Bearer {token}"}
            refused = await http.post("/mcp", json=ping, headers=sent)
            assert refused.status_code == 401
            challenge = refused.headers["www-authenticate"]
            assert (removed_words in challenge) is told, challenge
            assert (removed_words in refused.text) is told, refused.text
            rest = await http.get("/api/v1/servers",
                                  headers={"Authorization": f"Bearer {token}"})
            assert rest.status_code == 401
            assert (removed_words in rest.text) is told, rest.text
            assert token not in challenge + refused.text + rest.text
        write(kept, old)  # taken again: no longer "removed"
        assert (await gateway.reload_config()).error is None
        assert (await http.get("/api/v1/servers",
                               headers={"Authorization": f"Bearer {old}"})).status_code == 200


async def test_adding_or_removing_auth_by_reload_is_refused(tmp_path: Path) -> None:
    """FastMCP's app takes its verifier when built: a reload that adds or removes the
    whole ``gateway.auth`` is refused (the running config kept), never half applied
    (``tests/test_auth_reload_presence.py``)."""
    token = "mgw_" + "a" * 40
    path = tmp_path / "servers.yaml"
    path.write_text("servers: {}\n")
    with_auth = textwrap.dedent(f"""\
        gateway:
          auth:
            tokens:
              - {{name: ops, sha256: {hashlib.sha256(token.encode()).hexdigest()},
                 scopes: [admin]}}
        servers: {{}}
        """)
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    async with serve_http(gateway.http_app("http")) as base, \
            httpx2.AsyncClient(base_url=base) as http:
        path.write_text(with_auth)
        error = (await gateway.reload_config()).error or ""
        assert error.startswith("gateway.auth cannot be turned on by a reload: this gateway "
                                "serves without authentication"), error
        assert gateway.control.options.auth is None  # the running config, kept
        assert (await http.get("/api/v1/servers")).status_code == 200   # as it started
    # Started with auth, the section removed: refused, the tokens stay in force.
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    async with serve_http(gateway.http_app("http")) as base, \
            httpx2.AsyncClient(base_url=base) as http:
        path.write_text("servers: {}\n")
        error = (await gateway.reload_config()).error or ""
        assert error.startswith("gateway.auth cannot be turned off by a reload"), error
        assert gateway.control.options.auth is not None
        assert (await http.get("/api/v1/servers")).status_code == 401
        assert (await http.get("/api/v1/servers", headers={
            "Authorization": f"Bearer {token}"})).status_code == 200


# -- RFC 9728 and the challenges ------------------------------------------------------------


async def test_rfc_9728_metadata_is_served_at_the_root_form_too() -> None:
    pair = RSAKeyPair.generate()
    auth = {"jwt": {"public_key": pair.public_key, "issuer": ISSUER,
                    "audience": "mcp-gateway"}}

    def build(base: str) -> Gateway:
        return make_gateway({}, options={"auth": auth}, public_url=base)

    async with serving(build) as (_gateway, base), httpx2.AsyncClient(base_url=base) as http:
        inserted = await http.get("/.well-known/oauth-protected-resource/mcp")
        root = await http.get("/.well-known/oauth-protected-resource")
        assert inserted.status_code == root.status_code == 200
        assert root.json() == inserted.json()
        assert root.json()["resource"] == f"{base}/mcp"
        assert root.json()["authorization_servers"] == [ISSUER]
        # Every 401 points at it: the MCP endpoint's (FastMCP) and the REST API's alike.
        link = f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        accept = {"Accept": "application/json, text/event-stream"}
        for bad in ({}, {"Authorization": "Bearer mgw_not-a-token-00000000000"},
                    {"Authorization": "Basic dXNlcjpwYXNz"}):
            mcp = await http.post("/mcp", json=ping, headers=accept | bad)
            rest = await http.get("/api/v1/servers", headers=bad)
            assert mcp.status_code == rest.status_code == 401
            for challenge in (mcp.headers["www-authenticate"],
                              rest.headers["www-authenticate"]):
                assert challenge.startswith("Bearer") and link in challenge
            assert rest.json()["error"]["code"] == "unauthorized"
            # One wording on both: what is wrong and how to get a token (not FastMCP's
            # OAuth advice to re-register, which a static token never does).
            sent = bad.get("Authorization", "").startswith("Bearer")
            assert mcp.json()["error"] == ("invalid_token" if sent else "unauthorized")
            # A gateway that takes JWTs names them (one of static tokens does not).
            assert mcp.json()["error_description"] == (bad_token(True) if sent
                                                       else no_token(True))
            assert "a JWT from the issuer in gateway.auth.jwt" in mcp.json()[
                "error_description"]
            if sent or not bad:  # REST also names a scheme other than Bearer as such
                assert rest.json()["error"]["message"] == mcp.json()["error_description"]
            assert ('error="invalid_token"' in mcp.headers["www-authenticate"]) == sent


# -- SSE front: the same tokens and restrictions as streamable HTTP -------------------------


async def test_the_sse_front_takes_the_same_tokens_and_restrictions() -> None:
    ops, alice = "mgw_" + "a" * 40, "mgw_" + "b" * 40
    tokens = [{"name": "ops", "sha256": hashlib.sha256(ops.encode()).hexdigest(),
               "scopes": ["admin"]},
              {"name": "alice", "sha256": hashlib.sha256(alice.encode()).hexdigest(),
               "scopes": ["tools"], "servers": ["alpha"]}]
    gateway = make_gateway({"alpha": memory_entry("alpha"), "beta": memory_entry("beta")},
                           {"alpha": alpha_server(), "beta": beta_server()},
                           options={"auth": {"tokens": tokens}})
    async with serve_http(gateway.http_app("sse")) as base:
        async with httpx2.AsyncClient(base_url=base) as http:
            for headers in ({}, {"Authorization": "Bearer mgw_wrong-token-0000000000000"}):
                refused = await http.get("/sse", headers=headers)
                assert refused.status_code == 401
                assert refused.headers["www-authenticate"].startswith("Bearer")
                posted = await http.post("/messages/?session_id=x", json={}, headers=headers)
                assert posted.status_code == 401
                for answer in (refused, posted):
                    assert answer.json()["error_description"] == (
                        BAD_TOKEN if headers else NO_TOKEN)
                    # No JWT is taken here: none is offered (it was, from no issuer).
                    assert "JWT" not in answer.json()["error_description"]
                rest = await http.get("/api/v1/servers", headers=headers)
                assert rest.json()["error"]["message"] == (BAD_TOKEN if headers else NO_TOKEN)
        async with Client(f"{base}/sse", auth=alice) as client:
            names = {t.name for t in await client.list_tools()}
            assert "alpha_add" in names
            assert not any(n.startswith(("beta_", "gateway_")) for n in names)
            refused_call = await client.call_tool_mcp("beta_add", {"a": 1, "b": 2})
            assert refused_call.is_error and "Unknown tool" in refused_call.content[0].text
            assert (await client.call_tool("alpha_add", {"a": 1, "b": 2})).data == 3
        async with Client(f"{base}/sse", auth=ops) as client:
            names = {t.name for t in await client.list_tools()}
            assert {"alpha_add", "beta_add"} <= names
            assert any(n.startswith("gateway_") for n in names)


async def test_unauthenticated_http_calls_are_recorded_as_http_not_stdio() -> None:
    """Without gateway.auth (loopback only) a call's record names how the host came:
    'http', on the express lane and the full path alike (both said 'stdio')."""
    from fastmcp import Client as FastMCPClient

    from fast_mcp_gateway.front.calls import actor_name
    from fast_mcp_gateway.front.outcomes import CallOutcome
    from tests.fixtures import alpha_server, make_gateway, memory_entry, serve_http

    gateway = make_gateway({"alpha": memory_entry("alpha")}, {"alpha": alpha_server()})
    clients: list[str] = []

    def observe(outcome: CallOutcome) -> None:
        clients.append(actor_name(outcome.call.principal, outcome.call.front))

    gateway.provider.pipeline.observers.append(observe)
    app = gateway.http_app("http")
    lane = app.mcp_entry.app  # type: ignore[attr-defined]
    async with serve_http(app) as base:
        for mode in ("2026-07-28", "legacy"):  # the lane, then the full path
            async with FastMCPClient(f"{base}/mcp", mode=mode) as host:
                await host.call_tool("alpha_add", {"a": 1, "b": 2})
    assert clients == ["http", "http"]
    assert lane.served == 1
