"""FastMCP / SDK internals: contained in ``_compat`` and each one exercised.

An upgrade of ``fastmcp`` or ``mcp`` that renames or reshapes one of the private names
the gateway relies on must fail here, loudly, not disable a feature in silence.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import json
import pkgutil
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from fastmcp import Client, FastMCP
from fastmcp.server.dependencies import get_context
from fastmcp.server.providers import Provider
from fastmcp.tools.base import Tool
from mcp.server.connection import Connection

import fast_mcp_gateway
from fast_mcp_gateway import _compat

pytestmark = pytest.mark.anyio

PACKAGE = Path(fast_mcp_gateway.__file__).parent
LIBRARIES = ("fastmcp", "mcp", "mcp_types")

# FastMCP documents these as the methods a Provider subclass implements.
PROVIDER_HOOKS = frozenset({
    "_list_tools", "_get_tool", "_list_resources", "_get_resource",
    "_list_resource_templates", "_get_resource_template", "_list_prompts", "_get_prompt",
})


def _sources() -> list[Path]:
    # _compat.py, and beside it _compat_sessions.py (the session lane's) and
    # _compat_server.py (the server side's, re-exported by _compat)
    return [p for p in PACKAGE.rglob("*.py") if not p.name.startswith("_compat")]


def _library_private_names() -> set[str]:
    """Every ``_name`` the libraries define (functions, methods, attributes)."""
    names: set[str] = set()
    pattern = re.compile(r"(?:def |self\.|^\s*)(_[a-z][A-Za-z0-9_]*)\b", re.M)
    for lib in LIBRARIES:
        root = Path(importlib.import_module(lib).__file__ or "").parent
        for path in root.rglob("*.py"):
            names.update(pattern.findall(path.read_text(encoding="utf-8")))
    return names


def _own_private_names() -> set[str]:
    """Every ``_name`` the gateway defines itself (so ``tool._original`` is ours)."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_module_but_compat_reaches_a_private_name_of_fastmcp_or_the_sdk() -> None:
    library = _library_private_names()
    ours = _own_private_names()
    found: list[str] = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(PACKAGE)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and (
                node.module.split(".")[0] in LIBRARIES
            ):
                if any(part.startswith("_") for part in node.module.split(".")):
                    found.append(f"{where}:{node.lineno}: imports {node.module}")
                found += [f"{where}:{node.lineno}: imports {a.name} from {node.module}"
                          for a in node.names if a.name.startswith("_")]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not (
                node.attr.startswith("__")
            ):
                base = node.value
                is_self = isinstance(base, ast.Name) and base.id in ("self", "cls")
                if not is_self and node.attr in library and node.attr not in ours:
                    found.append(f"{where}:{node.lineno}: .{node.attr}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and (
                node.func.id in ("getattr", "setattr", "hasattr")
            ) and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and (
                str(node.args[1].value).startswith("_")
            ) and not str(node.args[1].value).startswith("__"):
                found.append(f"{where}:{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    assert not found, "private FastMCP/SDK names outside the compat modules:\n" + "\n".join(found)


def test_no_class_overrides_a_private_method_of_fastmcp_or_the_sdk() -> None:
    found: list[str] = []
    for info in pkgutil.walk_packages([str(PACKAGE)], "fast_mcp_gateway."):
        if info.name.rpartition(".")[2].startswith("_compat") or info.name.endswith(
                "__main__"):
            continue
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            for name in vars(cls):
                if not name.startswith("_") or name.startswith("__") or not callable(
                    vars(cls)[name]
                ):
                    continue
                for base in cls.__mro__[1:]:
                    if base.__module__.split(".")[0] not in LIBRARIES or name not in vars(base):
                        continue
                    # FastMCP itself is a Provider: its own hooks are not ours to override.
                    if (issubclass(cls, Provider) and not issubclass(cls, FastMCP)
                            and name in PROVIDER_HOOKS):
                        continue
                    found.append(f"{cls.__module__}.{cls.__qualname__}.{name} overrides "
                                 f"{base.__module__}.{base.__qualname__}.{name}")
    assert not found, "\n".join(found)


# -- each internal, exercised --------------------------------------------------------


async def test_the_sdk_stdio_helpers_spawn_talk_to_and_stop_a_process(tmp_path: Path) -> None:
    script = ("import sys\nprint('{\"jsonrpc\": \"2.0\", \"method\": \"ping\", \"id\": 1}', "
              "flush=True)\nsys.stdin.read()\n")
    command = await _compat.executable_command(sys.executable)
    with (tmp_path / "err.log").open("w") as errlog:
        process = await _compat.create_process(command, ["-c", script], env=None,
                                               errlog=errlog, cwd=tmp_path)
        assert process.stdout is not None and process.stdin is not None
        line = b""
        while not line.endswith(b"\n"):
            line += await process.stdout.receive()
        message = _compat.parse_line(line.decode())
        assert not isinstance(message, Exception)
        assert message.message.model_dump(by_alias=True, exclude_none=True)["method"] == "ping"
        assert isinstance(_compat.parse_line("not json"), Exception)
        pipe = _compat.pipe_writer(process.stdin)  # the tap writes its lines to it
        assert isinstance(pipe, asyncio.StreamWriter)
        pipe.write(b'{"jsonrpc": "2.0", "method": "ping", "id": 2}\n')
        await pipe.drain()
        assert _compat.pipe_writer(process.stdout) is None  # not a writer: use its send
        await _compat.close_pipe(process.stdin)  # EOF: the script's read returns
        assert await _compat.wait_for_process_exit(process, 30)
        await _compat.drain_stdout(process)
        _compat.close_subprocess_transport(process)
        await _compat.aclose_all(process.stdout)

        sleeper = await _compat.create_process(
            command, ["-c", "import time\nwhile True: time.sleep(1)"], env=None,
            errlog=errlog, cwd=tmp_path)
        await _compat.terminate_process_tree(sleeper)
        assert await _compat.wait_for_process_exit(sleeper, 30)
        _compat.close_subprocess_transport(sleeper)


def test_wire_fields_lists_a_result_models_keys() -> None:
    fields = _compat.wire_fields(types.CallToolResult)
    assert {"content", "isError", "structuredContent"} <= fields


def test_negotiate_auto_takes_one_session() -> None:
    signature = inspect.signature(_compat.negotiate_auto)
    assert inspect.iscoroutinefunction(_compat.negotiate_auto)
    assert list(signature.parameters) == ["session"]


def _echo_server() -> FastMCP[Any]:
    server: FastMCP[Any] = FastMCP("echo")

    @server.tool
    def echo(text: str) -> str:
        return text

    @server.tool
    def connection_kind() -> str:
        return type(_compat.connection_of(get_context().session)).__name__

    return server


async def test_stamped_raw_requests_and_the_closed_flag_on_a_live_session() -> None:
    async with Client(_echo_server()) as client:
        session = client.session
        assert _compat.session_closed(session) is False
        data: dict[str, Any] = {"method": "tools/call",
                                "params": {"name": "echo", "arguments": {"text": "hi"}}}
        opts: dict[str, Any] = {"timeout": 30}
        _compat.stamp_request(session, data, opts)
        result = await _compat.send_raw_request(session, "tools/call", data["params"], opts)
        assert isinstance(result, dict)
        assert result["content"][0]["text"] == "hi"
        kind = await client.call_tool("connection_kind", {})
        assert kind.content[0].text == Connection.__name__  # type: ignore[union-attr]
    assert _compat.session_closed(session) is True


async def test_a_server_request_read_beside_the_session_is_answered_by_it() -> None:
    """``deliver_message``: the session's own callback answers, in the caller's context,
    and the answer goes out on the session's write stream (its transport POSTs it); a
    ``notifications/cancelled`` stops a handler (no answer); a closed session drops."""
    from contextvars import ContextVar

    from mcp import ClientSession
    from mcp.shared.message import SessionMessage
    from pydantic import ValidationError

    caller: ContextVar[str] = ContextVar("caller", default="nobody")
    release = anyio.Event()

    async def sampling(ctx: Any, params: Any) -> types.CreateMessageResult:
        if params.messages[0].content.text == "hold":
            await release.wait()
        return types.CreateMessageResult(role="assistant", model=caller.get(),
                                         content=types.TextContent(type="text", text="ok"))

    to_client, from_server = anyio.create_memory_object_stream[Any](8)
    to_server, from_client = anyio.create_memory_object_stream[SessionMessage](8)

    def asking(request_id: str, text: str) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": request_id, "method": "sampling/createMessage",
                "params": {"messages": [{"role": "user", "content": {
                    "type": "text", "text": text}}], "maxTokens": 5}}

    async with to_client, from_server, to_server, from_client:
        session = ClientSession(from_server, to_server, sampling_callback=sampling)
        async with session:
            caller.set("host-1")
            await _compat.deliver_message(session, asking("gw-s1", "hi"))
            with anyio.fail_after(10):
                answer = (await from_client.receive()).message
            assert isinstance(answer, types.JSONRPCResponse) and answer.id == "gw-s1"
            assert answer.result["model"] == "host-1"  # the caller's context
            await _compat.deliver_message(session, asking("gw-s2", "hold"))
            await _compat.deliver_message(session, {
                "jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": "gw-s2"}})
            await _compat.deliver_message(session, {"jsonrpc": "2.0", "id": 3,
                                                    "method": "ping"})
            with anyio.fail_after(10):
                ping = (await from_client.receive()).message
            assert isinstance(ping, types.JSONRPCResponse) and ping.id == 3  # not gw-s2
            with pytest.raises(ValidationError):
                await _compat.deliver_message(session, {"jsonrpc": "2.0", "id": {}})
        await _compat.deliver_message(session, asking("gw-s3", "late"))  # dropped
        assert from_client.statistics().current_buffer_used == 0


async def test_the_low_level_server_and_the_lifespan_of_a_fastmcp_server() -> None:
    from contextlib import asynccontextmanager

    entered = anyio.Event()

    @asynccontextmanager
    async def lifespan(_: FastMCP[Any]) -> Any:
        entered.set()
        yield {}

    server: FastMCP[Any] = FastMCP("x", lifespan=lifespan)
    low = _compat.low_level_server(server)
    assert callable(low.add_request_handler)
    assert callable(low.create_initialization_options)
    async with _compat.lifespan(server):
        assert entered.is_set()


async def test_a_preferred_tool_is_resolved_first() -> None:
    asked: list[str] = []
    def preferred_fn() -> str:
        return "preferred"

    preferred = Tool.from_function(preferred_fn, name="shared")

    async def prefer(name: str) -> Tool | None:
        asked.append(name)
        return preferred if name == "shared" else None

    server = _compat.PreferredToolServer("x")

    @server.tool(name="shared")
    def shared_builtin() -> str:
        return "builtin"

    @server.tool
    def other() -> str:
        return "other"

    server.prefer_tool = prefer
    async with Client(server) as client:
        assert (await client.call_tool("shared", {})).content[0].text == "preferred"  # type: ignore[union-attr]
        assert (await client.call_tool("other", {})).content[0].text == "other"  # type: ignore[union-attr]
    assert asked == ["shared", "other"]


def test_the_pins_are_the_verified_minor_versions() -> None:
    """pyproject pins fastmcp and mcp to the minors this module was checked against."""
    from importlib.metadata import version

    pyproject = (PACKAGE.parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    for dist in ("fastmcp", "mcp"):
        installed = version(dist)
        major_minor = ".".join(installed.split(".")[:2])
        pin = re.search(rf'"{dist}(?:\[[^\]]*\])?([^"]*)"', pyproject)
        assert pin is not None, f"{dist} is not pinned in pyproject.toml"
        assert f"=={major_minor}.*" in pin.group(1) or f"~={major_minor}" in pin.group(1), (
            f"{dist} {installed}: pin {pin.group(1)!r} is not the verified minor")


class _Host:
    """A host call as ``DECLARING`` sees it (``FrontCall``'s three members)."""

    def __init__(self, caps: dict[str, Any] | None, *, modern: bool = True,
                 meta: dict[str, Any] | None = None) -> None:
        self.caps, self.is_modern, self.meta = caps, modern, meta

    def declared_capabilities(self) -> dict[str, Any] | None:
        return self.caps


async def test_a_narrowing_stamp_asks_for_the_log_level_the_host_asked_for() -> None:
    """The gateway's sessions ask for every level; a 2026-07-28 host's call asks for
    the host's own (from its request, or the request being sent), else for none; a
    handshake-era host's call and a request with no host call keep the session's."""
    level = types.LOG_LEVEL_META_KEY

    def asked(session: Any, meta: dict[str, Any] | None = None) -> Any:
        params: dict[str, Any] = {"name": "echo"}
        if meta is not None:
            params["_meta"] = dict(meta)
        data: dict[str, Any] = {"method": "tools/call", "params": params}
        _compat.stamp_request(session, data, {})
        return data["params"]["_meta"].get(level)

    async with Client(_echo_server(), log_handler=lambda message: None) as client:
        session = client.session
        assert client.protocol_version == "2026-07-28"
        _compat.narrowing_stamp(session)
        assert asked(session) == "debug"  # no DECLARING: the session's own
        for host, sent, want in (
                (_Host({}), None, None),
                (_Host({}), {level: "error"}, "error"),
                (_Host({}, meta={level: "warning"}), None, "warning"),  # tasks/get, ...
                (_Host({}, meta={level: "warning"}), {level: "error"}, "error"),
                (_Host({}, modern=False), None, "debug"),
                (_compat.NO_HOST, None, None)):
            token = _compat.DECLARING.set(host)
            try:
                assert asked(session, sent) == want, (vars(host), sent)
            finally:
                _compat.DECLARING.reset(token)


async def test_a_narrowing_stamp_declares_the_host_calls_capabilities() -> None:
    Host = _Host

    def stamped(session: Any) -> Any:
        data: dict[str, Any] = {"method": "tools/call", "params": {"name": "echo"}}
        _compat.stamp_request(session, data, {})
        return data["params"]["_meta"][types.CLIENT_CAPABILITIES_META_KEY]

    server: FastMCP[Any] = FastMCP("caps")

    @server.tool
    def seen() -> str:
        caps = get_context().session.client_capabilities
        return json.dumps(caps.model_dump(by_alias=True, mode="json", exclude_none=True)
                          if caps is not None else None)

    async with Client(server, elicitation_handler=lambda *a: None) as client:
        session = client.session
        assert client.protocol_version == "2026-07-28"
        full = stamped(session)
        assert full.get("elicitation") == {"form": {}, "url": {}}
        _compat.narrowing_stamp(session)
        _compat.narrowing_stamp(session)  # idempotent: one wrapper
        assert stamped(session) == full  # no host call: the session's own
        for caps, want in (({}, {}), ({"elicitation": {"url": {}}}, {"elicitation": {"url": {}}}),
                           (None, full)):
            token = _compat.DECLARING.set(Host(caps))
            try:
                assert stamped(session) == want
            finally:
                _compat.DECLARING.reset(token)
        assert stamped(session) == full
        # What the SDK's own typed requests send goes through the same stamp.
        token = _compat.DECLARING.set(Host({"elicitation": {"url": {}}, "roots": {}}))
        try:
            got = (await client.call_tool("seen", {})).content[0].text  # type: ignore[union-attr]
        finally:
            _compat.DECLARING.reset(token)
        assert "roots" not in full  # so the host's roots are not declared either
        assert json.loads(got) == {"elicitation": {"url": {}}}


def test_json_roundtrip_of_a_stamp_is_plain_json() -> None:
    """The stamp only writes JSON-serialisable values (the lane encodes them itself)."""
    async def run() -> None:
        async with Client(_echo_server()) as client:
            data: dict[str, Any] = {"method": "tools/list", "params": {}}
            _compat.stamp_request(client.session, data, {})
            json.dumps(data)
    anyio.run(run)


@pytest.mark.parametrize("name", _compat.__all__)
def test_every_export_exists(name: str) -> None:
    assert getattr(_compat, name) is not None


async def test_the_current_transport_is_read_inside_a_request() -> None:
    server: FastMCP[Any] = FastMCP("x")

    @server.tool
    def transport() -> str:
        return str(_compat.current_transport())

    assert _compat.current_transport() is None
    async with Client(server) as client:
        assert (await client.call_tool("transport", {})).content[0].text == "None"  # type: ignore[union-attr]


async def test_fastmcps_bearer_guard_answers_in_the_words_given() -> None:
    import httpx2
    from fastmcp.server.auth.providers.jwt import StaticTokenVerifier

    from tests.fixtures import serve_http

    server = FastMCP("guarded", auth=StaticTokenVerifier({"good": {"client_id": "c",
                                                                   "scopes": []}}))
    for transport, path in (("http", "/mcp"), ("sse", "/sse")):
        app = server.http_app(transport=transport)  # type: ignore[arg-type]
        assert _compat.reword_auth_challenges(app, lambda _query: "no token here",
                                              lambda: "that one is bad") \
            == (1 if transport == "http" else 2)  # SSE: the stream and the messages
        async with serve_http(app, startup=False) as base, \
                httpx2.AsyncClient(base_url=base) as http:
            method = http.post if transport == "http" else http.get
            missing = await method(path)
            bad = await method(path, headers={"Authorization": "Bearer wrong"})
        assert missing.status_code == bad.status_code == 401
        assert missing.json() == {"error": "unauthorized", "error_description": "no token here"}
        assert missing.headers["www-authenticate"] == "Bearer"
        assert bad.json() == {"error": "invalid_token", "error_description": "that one is bad"}
        assert bad.headers["www-authenticate"] == (
            'Bearer error="invalid_token", error_description="that one is bad"')
    with pytest.raises(ValueError, match="quoted-string"):
        _compat.reword_auth_challenges(app, lambda _query: "no token", lambda: 'say "no"')


async def test_an_http_sessions_opener_is_looked_up() -> None:
    """``http_session_owner``: the SDK's open sessions and the credential of each (a
    session used with another is told so: ``http/session_refusals.py``)."""
    import httpx2
    from fastmcp.server.auth.providers.jwt import StaticTokenVerifier

    from fast_mcp_gateway.http.session_quota import session_manager_of
    from tests.fixtures import serve_http

    server = FastMCP("owned", auth=StaticTokenVerifier({"good": {"client_id": "c",
                                                                 "scopes": []}}))
    app = server.http_app(transport="http")
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}}
    async with serve_http(app, startup=False) as base, \
            httpx2.AsyncClient(base_url=base) as http:
        opened = await http.post("/mcp", json=init, headers={
            "Authorization": "Bearer good",
            "Accept": "application/json, text/event-stream"})
        assert opened.status_code == 200, opened.text
        manager = session_manager_of(app, "/mcp")()
        held, owner = _compat.http_session_owner(manager, opened.headers["mcp-session-id"])
        assert held and owner is not None and owner["client_id"] == "c"
        assert _compat.http_session_owner(manager, "nope") == (False, None)


async def test_a_held_sessions_idle_countdown_waits_for_the_request() -> None:
    """``HeldSession``: a request the session lane serves holds the session's idle
    countdown as the SDK's transport holds it around each request it serves."""
    from mcp.server.streamable_http import StreamableHTTPServerTransport

    from fast_mcp_gateway._compat_sessions import HeldSession

    transport = StreamableHTTPServerTransport("s1", idle_timeout=60)
    async with transport.connect():
        assert transport.idle_scope is not None
        held = HeldSession(transport)
        assert not held.expired
        with held:
            assert transport.idle_scope.deadline == float("inf")
            with held:
                assert transport._requests_in_flight == 2
            assert transport.idle_scope.deadline == float("inf")
        assert anyio.current_time() < transport.idle_scope.deadline <= anyio.current_time() + 60
        transport.idle_scope.cancel()
        assert held.expired
        await transport.terminate()


async def test_a_sessions_request_ids_come_from_its_dispatchers_counter() -> None:
    """``next_request_id``: the session lane's questions are numbered as the SDK's own
    requests to the host (``JSONRPCDispatcher.send_raw_request``), from its counter,
    past any id a request in flight holds."""
    from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher

    from fast_mcp_gateway._compat_sessions import next_request_id

    send, receive = anyio.create_memory_object_stream[Any](1)
    with send, receive:
        dispatcher: Any = JSONRPCDispatcher(receive, send)
        assert next_request_id(dispatcher) == 1
        assert dispatcher._allocate_id() == 2  # the SDK's next one is past it
        dispatcher._pending[3] = object()  # a request in flight under a chosen id
        assert next_request_id(dispatcher) == 4


async def test_a_sessions_opening_requests_name_the_gateways_while_it_opens() -> None:
    """``tell_gateways``: the SDK's ``ClientSession`` builds ``initialize`` itself; its
    dispatcher's ``send_raw_request`` is wrapped while the session opens (other
    requests pass as they are), and is the class's own again after."""
    from mcp import ClientSession

    from fast_mcp_gateway._compat_sessions import tell_gateways

    to_server, sent = anyio.create_memory_object_stream[Any](8)
    answers, from_server = anyio.create_memory_object_stream[Any](8)
    async with to_server, sent, answers, from_server, ClientSession(
            from_server, to_server) as session:

        async def written(request: Any) -> Any:
            """The request ``request()`` writes (no server answers: it is cancelled)."""
            async with anyio.create_task_group() as tg:
                tg.start_soon(request)
                while not hasattr(message := (await sent.receive()).message, "id"):
                    pass  # (a cancellation's notification)
                tg.cancel_scope.cancel()
            return message

        with tell_gateways(session, "k", lambda: ["me"]):
            opening = await written(session.initialize)
            ping = await written(session.send_ping)
        after = await written(session.initialize)
        assert "send_raw_request" not in vars(session._dispatcher)
    assert opening.method == "initialize" and opening.params["_meta"] == {"k": ["me"]}
    assert ping.method == "ping" and "k" not in ((ping.params or {}).get("_meta") or {})
    assert after.method == "initialize" and "_meta" not in after.params


async def test_the_ssl_context_of_an_httpx_client_is_its_pools() -> None:
    """``tls_context`` reads httpx's pool (``_transport_for_url``, ``_pool``,
    ``_ssl_context``, ``_http2``): the context it connects to an https URL with, or
    ``None`` where it would not connect through a plain HTTP/1.1 pool of its own."""
    import ssl

    import httpx2

    context = ssl.create_default_context()
    async with httpx2.AsyncClient(verify=context) as client:
        assert _compat.tls_context(client, "https://example.com/mcp") is context
    async with httpx2.AsyncClient() as client:  # (verify=True: httpx's own context)
        assert isinstance(_compat.tls_context(client, "https://example.com/mcp"),
                          ssl.SSLContext)
    async with httpx2.AsyncClient(proxy="http://proxy.invalid:3128") as client:
        assert _compat.tls_context(client, "https://example.com/mcp") is None
        assert not _compat.direct(client, "http://example.com/mcp")
    async with httpx2.AsyncClient() as client:
        assert _compat.direct(client, "http://example.com/mcp")


def test_proxies_from_the_environment_are_matched_as_httpx_matches_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``env_proxied`` reads httpx's ``get_environment_proxies`` and ``URLPattern``."""
    for key in ("ALL_PROXY", "all_proxy", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", ".example.com")
    assert _compat.env_proxied("https://example.com/mcp")
    assert not _compat.env_proxied("https://www.example.com/mcp")
    assert not _compat.env_proxied("http://example.com/mcp")
