"""Per-user upstream credentials: ``${caller.token}`` reaches an HTTP upstream per
caller, on that caller's own session, and nowhere else (logs, store, errors)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from fast_mcp_gateway import parse_config
from fast_mcp_gateway.errors import UpstreamUnavailable
from fast_mcp_gateway.telemetry.redaction import CALLERS, SECRETS, RecentSecrets, mask_text
from fast_mcp_gateway.upstream.credentials import Caller, for_caller, without_caller_headers
from tests.fixtures import make_gateway, serve_http
from tests.test_asks_routing import asker_http, records, until

pytestmark = pytest.mark.anyio


def token() -> tuple[str, str]:
    value = "mgw_" + secrets.token_urlsafe(32)
    return value, hashlib.sha256(value.encode()).hexdigest()


def stored_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.glob("gateway.db*"))


async def test_each_caller_token_reaches_the_upstream_on_its_own_session_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    alice, alice_sha = token()
    bob, bob_sha = token()
    record = tmp_path / "asker.jsonl"
    db = tmp_path / "gateway.db"
    async with asker_http(tmp_path, record) as url:
        gateway = make_gateway(
            {"asker": {"url": url, "protocol": "legacy",
                       "headers": {"Authorization": "Bearer ${caller.token}"}}},
            options={"auth": {"tokens": [
                {"name": "alice", "sha256": alice_sha, "scopes": ["tools"]},
                {"name": "bob", "sha256": bob_sha, "scopes": ["tools"]}]}},
            db=db)
        service = gateway.manager.get("asker")
        assert service.config.per_client  # implied by ${caller.*}
        async with serve_http(gateway.http_app("http")) as base:
            await until(lambda: service.state == "ready")
            for value in (alice, bob, alice):
                async with Client(f"{base}/mcp", mode="legacy", auth=value) as host:
                    seen_by_upstream = (await host.call_tool("asker_whoami", {})).data
                    assert seen_by_upstream == hashlib.sha256(
                        f"Bearer {value}".encode()).hexdigest()
                    # A failing call's error text goes through the masking too.
                    with pytest.raises(ToolError) as failed:
                        await host.call_tool("asker_ask", {})  # missing argument
                    assert value not in str(failed.value)
            # One session per caller identity (alice's second host reuses hers), kept
            # until idle: its key is the credential, not a host connection.
            assert service.clients is not None and service.clients.created == 2
            assert len(service.clients.upstreams) == 2
    seen = [r["authorization"] for r in records(record) if r["event"] == "whoami"]
    assert seen == [f"Bearer {alice}", f"Bearer {bob}", f"Bearer {alice}"]
    # Masked while their sessions may echo them, in the bounded registry (a refreshed
    # JWT is a new value each time), not the add-only one.
    assert alice in CALLERS and bob in CALLERS
    assert alice not in SECRETS and bob not in SECRETS
    logged = "\n".join(r.getMessage() for r in caplog.records)
    stored = stored_bytes(tmp_path)
    for value in (alice, bob):
        assert value not in logged
        assert value.encode() not in stored
    assert b"alice" in stored and b"bob" in stored  # the call records name the callers


async def test_a_call_without_a_caller_credential_is_refused_clearly(tmp_path: Path) -> None:
    """In-process (as in stdio mode) there is no caller token to forward."""
    async with asker_http(tmp_path, tmp_path / "asker.jsonl") as url:
        gateway = make_gateway({"asker": {
            "url": url, "protocol": "legacy",
            "headers": {"Authorization": "Bearer ${caller.token}"}}})
        async with Client(gateway.server) as host:
            await until(lambda: gateway.manager.get("asker").state == "ready")
            with pytest.raises(ToolError,
                               match=r"takes the caller's own credential.*bearer token"):
                await host.call_tool("asker_whoami", {})


def test_caller_references_are_filled_per_caller_and_registered_as_secrets() -> None:
    config = parse_config({"servers": {"u": {"url": "http://127.0.0.1:9/mcp", "headers": {
        "Authorization": "Bearer ${caller.token}", "X-User": "${caller.claims.sub}",
        "X-Static": "fixed"}}}}, source="t").servers["u"]
    assert without_caller_headers(config).headers == {"X-Static": "fixed"}
    value = "tok-" + secrets.token_hex(8)
    filled = for_caller(config, Caller("carol", value, {"sub": "carol@idp"}))
    assert filled.headers == {"Authorization": f"Bearer {value}", "X-User": "carol@idp",
                              "X-Static": "fixed"}
    assert value not in repr(Caller("carol", value)) and mask_text(value) == "***"
    with pytest.raises(UpstreamUnavailable, match="no 'sub' claim") as missing:
        for_caller(config, Caller("dave", "tok-" + secrets.token_hex(8), {}))
    assert "tok-" not in str(missing.value)


def test_callers_credentials_are_masked_in_a_bounded_registry() -> None:
    """Each caller's token (a JWT: a new one at every refresh) went into the add-only
    ``SECRETS``, which compiles one pattern of every value at each new one: the 201st
    distinct JWT took 1.4 s, on the event loop, in that caller's first call, and the
    registry grew for as long as the gateway ran.  They go to ``CALLERS`` now, bounded
    (the oldest dropped), long JWTs included."""
    config = parse_config({"servers": {"u": {"url": "http://127.0.0.1:9/mcp", "headers": {
        "Authorization": "Bearer ${caller.token}"}}}}, source="t").servers["u"]
    known = len(SECRETS)
    tokens = ["tok-" + secrets.token_hex(16) for _ in range(50)]
    for value in tokens:
        for_caller(config, Caller("carol", value))
    assert len(SECRETS) == known
    assert all(mask_text(f"echoed {value}") == "echoed ***" for value in tokens)
    bounded = RecentSecrets(limit=2, longest=16 * 1024)
    jwt = "eyJ" + "a" * 9000  # longer than a call argument's credential (RECENT's limit)
    bounded.add([jwt, "second-token", "third-token"])
    assert jwt not in bounded and bounded.mask("second-token third-token") == "*** ***"
    bounded.add([jwt])
    assert bounded.mask(f"<{jwt}>") == "<***>" and "second-token" not in bounded


class _Counted(str):
    """A text that counts the substring checks made on it."""

    checks = 0

    def __contains__(self, value: object) -> bool:
        _Counted.checks += 1
        return super().__contains__(value)  # type: ignore[operator]


def test_a_text_is_checked_only_for_callers_credentials_it_is_long_enough_to_hold() -> None:
    """``CALLERS`` holds up to 1024 JWTs (hundreds of characters each), and ``mask_text``
    runs on every string of every call's arguments: one substring check per value, even
    for a text shorter than every value, cost ~0.2 ms per string once the registry was
    full (a call's whole CPU is ~0.7 ms).  A value longer than the text is not looked
    for now; those it may hold still are, and are masked."""
    registry = RecentSecrets(limit=1024, longest=16 * 1024)
    jwts = ["eyJ" + secrets.token_urlsafe(600) for _ in range(1000)]
    registry.add([*jwts, "short-token-1234"])
    _Counted.checks = 0
    assert registry.mask(_Counted("an argument: short-token-1234")) == "an argument: ***"
    assert _Counted.checks == 1
    text = _Counted(f"echoed {jwts[7]} and short-token-1234")
    assert registry.mask(text) == "echoed *** and ***"




async def test_a_cached_or_stale_answer_goes_to_its_own_caller_only(tmp_path: Path) -> None:
    """A per_client server's answer is its caller's (here: what the upstream does with
    that caller's token): the result cache and the stale fallback keep it for that
    caller.  Before, both were keyed by tool and arguments alone, and a second caller
    was served the first one's answer without its own credential reaching the upstream."""
    alice, alice_sha = token()
    bob, bob_sha = token()
    record = tmp_path / "asker.jsonl"
    header = {"Authorization": "Bearer ${caller.token}"}

    def digest(value: str) -> str:
        return hashlib.sha256(f"Bearer {value}".encode()).hexdigest()

    async with contextlib.AsyncExitStack() as upstream:
        url = await upstream.enter_async_context(asker_http(tmp_path, record))
        gateway = make_gateway(
            {"cached": {"url": url, "protocol": "legacy", "headers": header,
                        "idempotent_tools": ["whoami"], "cache": {"ttl": 600}},
             "stale": {"url": url, "protocol": "legacy", "headers": header,
                       "retry": {"attempts": 1}, "fallback": {"stale_cache_ttl": 600}}},
            options={"auth": {"tokens": [
                {"name": "alice", "sha256": alice_sha, "scopes": ["tools"]},
                {"name": "bob", "sha256": bob_sha, "scopes": ["tools"]}]}})
        async with serve_http(gateway.http_app("http")) as base:
            async with Client(f"{base}/mcp", mode="legacy", auth=alice) as host:
                for hit in (False, True):
                    answer = await host.call_tool_mcp("cached_whoami", {})
                    assert answer.content[0].text == digest(alice)  # type: ignore[union-attr]
                    assert ("io.github.fast-mcp-gateway/cache" in (answer.meta or {})) is hit
                fresh = await host.call_tool_mcp("stale_my_digest", {})
                assert fresh.content[0].text == digest(alice)  # type: ignore[union-attr]
            async with Client(f"{base}/mcp", mode="legacy", auth=bob) as host:
                answer = await host.call_tool_mcp("cached_whoami", {})
                assert answer.content[0].text == digest(bob)  # type: ignore[union-attr]
                assert "io.github.fast-mcp-gateway/cache" not in (answer.meta or {})
            # alice's whoami once (then the cache), her my_digest, bob's whoami.
            seen = [r["authorization"] for r in records(record) if r["event"] == "whoami"]
            assert seen == [f"Bearer {alice}", f"Bearer {alice}", f"Bearer {bob}"]
            await upstream.aclose()  # the upstream is gone: what is left is the fallback
            async with Client(f"{base}/mcp", mode="legacy", auth=bob) as host:
                refused = await host.call_tool_mcp("stale_my_digest", {})
                assert refused.is_error and digest(alice) not in str(refused.content)
            async with Client(f"{base}/mcp", mode="legacy", auth=alice) as host:
                stale = await host.call_tool_mcp("stale_my_digest", {})
                assert stale.content[0].text == digest(alice)  # type: ignore[union-attr]
                assert "io.github.fast-mcp-gateway/stale" in (stale.meta or {})
