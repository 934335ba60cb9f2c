"""The dashboard over plain HTTP (no browser): login, cookies, CSRF, scopes, escaping,
the stdio dashboard's one-time token; and its pure parts (event bus, schema forms,
the vendored files)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client, FastMCP

from fast_mcp_gateway.telemetry.events import EventBus
from fast_mcp_gateway.ui.schema_form import arguments_of, fields_of
from fast_mcp_gateway.ui.session import COOKIE
from fast_mcp_gateway.ui.vendor import MANIFEST, PERMISSIVE, VENDOR
from tests.fixtures import make_gateway, memory_entry, serve_http

OPS = "mgw_uitest-ops-5f1c0a7e93b2"
BOB = "mgw_uitest-bob-2d8e6b41"
ALICE = "mgw_uitest-alice-9a3c"
AUTH = {"tokens": [{"name": "ops", "token": OPS, "scopes": ["admin"]},
                   {"name": "bob", "token": BOB, "scopes": ["tools"]},
                   {"name": "alice", "token": ALICE, "scopes": ["admin"],
                    "servers": ["other"]}]}
XSS = "<script>alert(1)</script>"


def hostile() -> FastMCP[Any]:
    mcp = FastMCP("hostile", instructions=f"instructions {XSS}")

    @mcp.tool(description=f"a tool whose description is {XSS}")
    def ping(text: str) -> str:
        return text

    return mcp


def _csrf(html: str) -> str:
    found = re.search(r'(?:name="csrf_token" value=|"X-CSRF-Token": )"([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _cookie(base: str) -> str:
    """The login cookie's name at ``base`` (http://127.0.0.1:PORT): it names the port."""
    return f"{COOKIE}_{base.rsplit(':', 1)[1]}"


async def _login(http: httpx2.AsyncClient, base: str, token: str) -> str:
    page = await http.get(base + "/ui/login")
    done = await http.post(base + "/ui/login", data={"token": token, "csrf_token":
                                                     _csrf(page.text), "next": "/ui/"})
    assert done.status_code == 303, done.text
    overview = await http.get(base + "/ui/")
    assert overview.status_code == 200
    return _csrf(overview.text)


@pytest.mark.anyio
async def test_login_cookie_csrf_scopes_and_escaping(tmp_path: Path) -> None:
    # Server names are validated (no markup); descriptions and upstream texts are not.
    name = "hostile"
    gateway = make_gateway({name: memory_entry("hostile", description=f"desc {XSS}")},
                           {"hostile": hostile()}, options={"auth": AUTH},
                           db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        service = gateway.manager.services[name]
        await service.wait_until(lambda: str(service.state) == "ready", within=30)

        # No cookie: pages send to the login page; mutations are 401.
        first = await http.get(base + "/ui/servers/x")
        assert first.status_code == 303 and "/ui/login?next=" in first.headers["location"]
        assert (await http.post(base + "/ui/servers/x/action")).status_code == 401

        # A wrong token is refused and sets no cookie; a good one sets a strict cookie.
        page = await http.get(base + "/ui/login")
        bad = await http.post(base + "/ui/login", data={"token": "nope", "csrf_token":
                                                        _csrf(page.text)})
        assert bad.status_code == 401 and "set-cookie" not in bad.headers
        no_csrf = await http.post(base + "/ui/login", data={"token": OPS})
        assert no_csrf.status_code == 403 and "set-cookie" not in no_csrf.headers
        # A token in the address is for the stdio dashboard's one-time links only: a
        # link on any site would log a browser in as the token's owner (the CSRF check
        # of the form bypassed), and the bearer token would stay in its history.
        linked = await http.get(base + "/ui/login", params={"token": OPS})
        assert linked.status_code == 400 and "set-cookie" not in linked.headers
        assert "paste it into this form" in linked.text and OPS not in linked.text
        good = await http.post(base + "/ui/login", data={"token": OPS, "csrf_token":
                                                         _csrf(page.text), "next":
                                                         "https://evil.example/"})
        cookie = good.headers["set-cookie"]
        assert good.status_code == 303 and good.headers["location"] == "/ui/"  # no open redirect
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        overview = await http.get(base + "/ui/")
        csrf = _csrf(overview.text)
        assert OPS not in overview.text  # the token never appears in a page

        # Upstream-controlled text (a server name, a description) is shown escaped.
        detail = await http.get(base + "/ui/servers/hostile")
        for text in (overview.text, detail.text):
            assert "<script>" not in text.replace('<script src="/ui/static/', "")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail.text
        assert "Content-Security-Policy" in detail.headers

        # Mutations need the CSRF token (form field or header), checked server-side.
        url = base + "/ui/servers/hostile/action"
        refused = await http.post(url, data={"action": "reset_breaker"})
        assert refused.status_code == 403 and "CSRF" in refused.text
        stale = await http.post(url, data={"action": "reset_breaker", "csrf_token": "x" * 40})
        assert stale.status_code == 403
        done = await http.post(url, data={"action": "reset_breaker", "csrf_token": csrf})
        assert done.status_code == 200 and "Reset circuit breaker: done" in done.text
        by_header = await http.post(url, data={"action": "reset_breaker"},
                                    headers={"X-CSRF-Token": csrf})
        assert by_header.status_code == 200

        # Logging out clears the cookie.
        out = await http.post(base + "/ui/logout", data={"csrf_token": csrf})
        assert out.status_code == 303
        assert f'{_cookie(base)}=""' in out.headers["set-cookie"]

    # a fresh client per token (cookies are per client)
    async with serve_http(gateway.http_app()) as base:
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as bob:
            csrf = await _login(bob, base, BOB)
            overview = (await bob.get(base + "/ui/")).text
            assert "/ui/add" not in overview  # admin actions hidden...
            forged = await bob.post(base + "/ui/add", data={"csrf_token": csrf, "name": "x",
                                                            "command": "true"})
            assert forged.status_code == 403  # ...and refused
            assert (await bob.get(base + "/ui/inspector")).status_code == 403
            assert (await bob.get(base + "/ui/logs?tab=audit")).status_code == 403
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as alice:
            await _login(alice, base, ALICE)  # restricted to a server that is not there
            assert "hostile" not in (await alice.get(base + "/ui/")).text
            assert (await alice.get(base + "/ui/servers/hostile")).status_code == 404


@pytest.mark.anyio
async def test_the_cookie_is_a_server_side_session_ended_by_logout_and_by_a_reload(
        tmp_path: Path) -> None:
    from fast_mcp_gateway.config.settings import GatewaySettings
    from fast_mcp_gateway.gateway import Gateway

    def write(*tokens: tuple[str, str, str]) -> None:
        entries = [{"name": name, "sha256": hashlib.sha256(token.encode()).hexdigest(),
                    "scopes": [scope]} for name, token, scope in tokens]
        path.write_text(json.dumps({"gateway": {"auth": {"tokens": entries}}, "servers": {}}))

    path = tmp_path / "servers.yaml"
    write(("ops", OPS, "admin"), ("bob", BOB, "tools"))
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    async with serve_http(gateway.http_app()) as base:
        async def sees_overview(cookie: str) -> bool:
            async with httpx2.AsyncClient(timeout=30, cookies={_cookie(base): cookie}
                                          ) as raw:
                answer = await raw.get(base + "/ui/")
            assert answer.status_code in (200, 303), answer.text
            return answer.status_code == 200

        async with httpx2.AsyncClient(timeout=30) as ops, \
                httpx2.AsyncClient(timeout=30) as bob:
            page = await ops.get(base + "/ui/login")
            # Behind an https proxy (uvicorn trusts 127.0.0.1's X-Forwarded-Proto).
            login = await ops.post(base + "/ui/login", headers={"X-Forwarded-Proto": "https"},
                                   data={"token": OPS, "csrf_token": _csrf(page.text)})
            header = login.headers["set-cookie"]
            assert login.status_code == 303 and OPS not in header
            assert "Secure" in header and "HttpOnly" in header and "SameSite=strict" in header
            assert "Max-Age=43200" in header  # a bounded lifetime: 12 hours
            session = login.cookies[_cookie(base)]
            assert len(session) >= 40 and session != OPS
            await _login(bob, base, BOB)
            bob_session = bob.cookies[_cookie(base)]

            # The session id is the key; the raw token (the old cookie) or a guess is not.
            assert await sees_overview(session)
            assert not await sees_overview(OPS)
            assert not await sees_overview(session[:-1] + ("A" if session[-1] != "A" else "B"))
            # The token's scopes still apply to its session.
            assert (await bob.get(base + "/ui/inspector")).status_code == 403

            # A reload that removes bob's token ends bob's session; ops's goes on.
            write(("ops", OPS, "admin"))
            assert (await gateway.reload_config()).error is None
            assert not await sees_overview(bob_session)
            assert await sees_overview(session)

            # Logging out ends the session on the server: a copy of the cookie is dead.
            # (The cookie is Secure: this client sends it over http only when told to.)
            async with httpx2.AsyncClient(timeout=30, cookies={_cookie(base): session}
                                          ) as browser:
                csrf = _csrf((await browser.get(base + "/ui/")).text)
                out = await browser.post(base + "/ui/logout", data={"csrf_token": csrf},
                                         follow_redirects=False)
            assert out.status_code == 303
            assert not await sees_overview(session)


def test_sessions_end_after_their_lifetime_and_beyond_the_cap() -> None:
    from fast_mcp_gateway.ui.login_links import Sessions

    now = [1_000_000.0]
    sessions: Sessions[str] = Sessions(ttl=3600, cap=3, clock=lambda: now[0])
    first = sessions.open("token-a")
    assert sessions.get(first) == "token-a" and sessions.get("") is None
    now[0] += 3599
    assert sessions.get(first) == "token-a"
    now[0] += 2
    assert sessions.get(first) is None and len(sessions) == 0
    ids = [sessions.open(f"t{i}") for i in range(4)]
    assert sessions.get(ids[0]) is None and sessions.get(ids[-1]) == "t3"
    sessions.close(ids[-1])
    assert sessions.get(ids[-1]) is None


@pytest.mark.anyio
async def test_without_auth_mutations_follow_the_anonymous_policy(tmp_path: Path) -> None:
    gateway = make_gateway({}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        page = await http.get(base + "/ui/")  # no login page without auth
        assert page.status_code == 200 and "anonymous" in page.text
        assert "/ui/add" not in page.text
        refused = await http.post(base + "/ui/add", data={"csrf_token": _csrf(page.text),
                                                          "name": "x", "command": "true"})
        assert refused.status_code == 403
    admin = make_gateway({}, db=tmp_path / "gw2.db", allow_unauthenticated_admin=True)
    async with serve_http(admin.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        page = await http.get(base + "/ui/add")
        assert page.status_code == 200
        assert (await http.post(base + "/ui/add", data={"name": "x"})).status_code == 403
        invalid = await http.post(base + "/ui/add", data={
            "csrf_token": _csrf(page.text), "name": "x", "kind": "stdio", "command": "",
            "replicas": "0", "enabled": "on"})
        assert invalid.status_code == 422 and 'id="err-replicas"' in invalid.text


@pytest.mark.anyio
async def test_the_stdio_dashboard_logs_in_once_per_link(tmp_path: Path) -> None:
    from fast_mcp_gateway.ui.login_links import login_url
    from fast_mcp_gateway.ui.standalone import serve_dashboard, token_file

    gateway = make_gateway({}, db=tmp_path / "gw.db")
    async with anyio.create_task_group() as tg:
        url = await tg.start(serve_dashboard, gateway.control, gateway.events, "127.0.0.1:0")
        path = token_file()
        assert path.stat().st_mode & 0o777 == 0o600
        saved = json.loads(path.read_text())
        base = url.split("/ui/")[0]
        assert saved["base"] == base + "/ui" and url.split("token=")[1] not in path.read_text()
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
            assert (await http.get(base + "/ui/")).status_code == 303
            wrong = await http.get(base + "/ui/login?token=guess")
            assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
            assert "mcp-gateway dashboard" in wrong.text
            entered = await http.get(url + "&next=/ui/logs")
            cookie = entered.headers["set-cookie"]
            # The cookie holds a session id, not the link's token; the redirect drops it.
            assert entered.status_code == 303 and entered.headers["location"] == "/ui/logs"
            assert cookie.startswith(f"{_cookie(base)}=")
            assert url.split("token=")[1] not in cookie
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie
            overview = await http.get(base + "/ui/")
            assert overview.status_code == 200

            # Logging out ends the session on the server too: the old cookie is dead.
            session = http.cookies.get(_cookie(base))
            assert session
            out = await http.post(base + "/ui/logout", data={"csrf_token": _csrf(overview.text)})
            assert out.status_code == 303
            async with httpx2.AsyncClient(timeout=30, follow_redirects=False,
                                          cookies={_cookie(base): session}) as old:
                assert (await old.get(base + "/ui/")).status_code == 303

        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as other:
            again = await other.get(url)  # the same link in another browser
            assert again.status_code == 401 and "set-cookie" not in again.headers
            assert "already used" in again.text and "mcp-gateway dashboard" in again.text
            # A fresh link made from the file's key (what 'mcp-gateway dashboard' does)
            # works once, also pasted whole into the login form.
            fresh = login_url(saved["base"], bytes.fromhex(saved["key"]))
            page = await other.get(base + "/ui/login")
            assert "mcp-gateway dashboard" in page.text
            pasted = await other.post(base + "/ui/login", data={
                "token": fresh, "csrf_token": _csrf(page.text), "next": "/ui/"})
            assert pasted.status_code == 303 and (await other.get(base + "/ui/")
                                                  ).status_code == 200
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as third:
            assert (await third.get(fresh)).status_code == 401
        tg.cancel_scope.cancel()
    assert not path.exists()


def test_login_links_are_single_use_and_expire() -> None:
    from fast_mcp_gateway.ui.login_links import LoginLinks, make_token

    now = [1_000_000.0]
    links = LoginLinks(ttl=600, clock=lambda: now[0])
    first, second = links.mint(), links.mint()
    assert first != second
    assert links.redeem(first) == "ok" and links.redeem(first) == "spent"
    assert links.redeem(make_token(b"another gateway's key", now[0])) == "invalid"
    head, _, mac = first.rpartition(".")
    assert links.redeem(f"{head}.{mac[:-1]}x") == "invalid"  # tampered
    assert links.redeem("1.2") == "invalid" and links.redeem("zz.a.b") == "invalid"
    now[0] += 601
    assert links.redeem(second) == "expired"
    assert links.redeem(make_token(links.key, now[0] + 3600)) == "invalid"  # from the future
    session = links.open_session()
    assert links.has_session(session) and not links.has_session("forged")
    links.close_session(session)
    assert not links.has_session(session)
    sessions = [links.open_session() for _ in range(70)]
    assert not links.has_session(sessions[0]) and links.has_session(sessions[-1])


async def test_event_bus_drops_oldest_for_a_slow_subscriber() -> None:
    bus = EventBus(capacity=3)
    assert bus.publish("call", {"n": 0}) is None  # nobody listens: nothing kept
    with bus.subscribe() as slow, bus.subscribe(capacity=10) as fast:
        for n in range(1, 6):
            bus.publish("call", {"n": n})
        assert slow.dropped == 2 and fast.dropped == 0
        assert [e.payload["n"] for e in iter(slow.get_nowait, None)] == [3, 4, 5]
        assert [(await fast.get()).payload["n"] for _ in range(5)] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]
        bus.close()
        assert await fast.get() is None
    assert bus.subscribers == 0


test_event_bus_drops_oldest_for_a_slow_subscriber = pytest.mark.anyio(
    test_event_bus_drops_oldest_for_a_slow_subscriber)


def test_schema_form_round_trip() -> None:
    schema = {"type": "object", "required": ["title", "count", "flag"], "properties": {
        "title": {"type": "string"}, "count": {"type": "integer"},
        "ratio": {"type": "number"}, "flag": {"type": "boolean"},
        "maybe": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
        "mode": {"enum": ["a", "b", 3]}, "tags": {"type": "array", "items": {"type": "string"}},
        "where": {"$ref": "#/$defs/Place"}, "free": {"type": "object"}},
        "$defs": {"Place": {"type": "object", "required": ["city"],
                            "properties": {"city": {"type": "string"},
                                           "zip": {"type": "integer"}}}}}
    fields = {f.key: f for f in fields_of(schema)}
    assert {k: f.kind for k, f in fields.items()} == {
        "title": "string", "count": "integer", "ratio": "number", "flag": "boolean",
        "maybe": "boolean", "mode": "enum", "tags": "lines", "where": "object", "free": "json"}
    assert fields["where"].children[0].name == "arg.where.city"
    assert fields["where"].children[0].required
    args, errors = arguments_of(list(fields.values()), {
        "arg.title": "t", "arg.count": "3", "arg.ratio": "0.5", "arg.maybe": "false",
        "arg.mode": "3", "arg.tags": "x\ny\n", "arg.where.city": "Oslo", "arg.free": '{"k": 1}'})
    assert errors == {}
    assert args == {"title": "t", "count": 3, "ratio": 0.5, "flag": False, "maybe": False,
                    "mode": 3, "tags": ["x", "y"], "where": {"city": "Oslo"},
                    "free": {"k": 1}}
    _, errors = arguments_of(list(fields.values()), {"arg.count": "three", "arg.free": "{"})
    assert set(errors) == {"arg.title", "arg.count", "arg.free", "arg.where.city"}
    assert "whole number" in errors["arg.count"]
    # float() reads 'nan' and 'inf', json.loads NaN and 1000-deep arrays (RecursionError):
    # none of them is JSON an upstream reads.
    deep = "[" * 5000 + "]" * 5000
    for ratio, free in [("nan", "NaN"), ("inf", deep), ("-Infinity", '{"k": Infinity}')]:
        _, errors = arguments_of(list(fields.values()), {
            "arg.title": "t", "arg.count": "3", "arg.flag": "on", "arg.where.city": "Oslo",
            "arg.ratio": ratio, "arg.free": free})
        assert errors == {"arg.ratio": "ratio must be a number",
                          "arg.free": "free must be valid JSON"}, errors


def test_vendored_files_match_their_manifest_and_licenses() -> None:
    libraries = json.loads(MANIFEST.read_text())["libraries"]
    assert libraries, "the manifest lists no library"
    for lib in libraries:
        assert lib["license"] in PERMISSIVE, lib
        data = (VENDOR / lib["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == lib["sha256"], f"{lib['file']} changed"
        assert (VENDOR / lib["license_file"]).read_text().strip()
    assert {p.name for p in VENDOR.iterdir()} == {"manifest.json"} | {
        lib[k] for lib in libraries for k in ("file", "license_file")}


def _form_fields(html: str) -> dict[str, str]:
    """The edit form's fields as the browser would send them back unchanged."""
    fields = dict(re.findall(r'<input id="(\w+)" name="\w+"[^>]*? value="([^"]*)"', html))
    for name, text in re.findall(r'<textarea id="(\w+)" name="\w+"[^>]*>([^<]*)</textarea>',
                                 html):
        fields[name] = text
    kind = re.search(r'name="kind" value="(\w+)" checked', html)
    assert kind, html[:300]
    fields["kind"] = kind.group(1)
    return {k: v.replace("&#34;", '"').replace("&#39;", "'").replace("&amp;", "&")
            for k, v in fields.items()}


@pytest.mark.anyio
async def test_the_edit_form_shows_a_server_disabled_at_runtime_as_disabled(
        tmp_path: Path) -> None:
    """The form showed the config's ``enabled`` (true), not the server as it runs: saving
    a new description of a server disabled at runtime turned it back on."""
    gateway = make_gateway({"clock": memory_entry("clock")}, {"clock": hostile()},
                           db=tmp_path / "gw.db", allow_unauthenticated_admin=True)
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        async with Client(gateway.server) as client:
            await client.call_tool("gateway_disable_server", {"name": "clock"})
        form = await http.get(f"{base}/ui/servers/clock/edit")
        assert 'name="enabled" value="on">' in form.text  # not checked
        fields = _form_fields(form.text) | {"description": "still off"}
        sent = await http.post(f"{base}/ui/servers/clock/edit", data={
            **fields, "enabled": ["off"], "csrf_token": _csrf(form.text)})
        assert sent.status_code == 200 and "Saved server" in sent.text, sent.text[-2000:]
        service = gateway.manager.services["clock"]
        assert service.config.description == "still off"
        assert not service.enabled and str(service.state) == "disabled"


@pytest.mark.anyio
async def test_an_edit_of_a_server_whose_auth_comes_from_the_environment_says_auth(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """servers.yaml gives ``auth.client_secret`` as ``${VAR}``: a dashboard edit cannot
    copy it into the store, and says so naming ``auth`` (sec29: it named the replica
    settings (instances), under Replicas, which this server does not have)."""
    monkeypatch.setenv("UI_AUTH_SECRET", "ui-auth-secret-value-5521")
    gateway = make_gateway({"clock": memory_entry("clock", auth={
        "type": "client_credentials", "client_id": "svc", "client_secret": "${UI_AUTH_SECRET}",
        "token_url": "http://127.0.0.1:9/token"})}, {"clock": hostile()},
        db=tmp_path / "gw.db", allow_unauthenticated_admin=True)
    async with serve_http(gateway.http_app(), startup=False) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        form = await http.get(f"{base}/ui/servers/clock/edit")
        fields = _form_fields(form.text) | {"description": "changed"}
        sent = await http.post(f"{base}/ui/servers/clock/edit", data={
            **fields, "enabled": ["off", "on"], "csrf_token": _csrf(form.text)})
        assert sent.status_code == 422
        assert "this server&#39;s auth settings take values from environment variables in " \
               "servers.yaml, which a dashboard edit cannot copy: change it in servers.yaml" \
               in sent.text, sent.text[-3000:]
        assert "replica settings" not in sent.text and "ui-auth-secret" not in sent.text
        assert gateway.manager.services["clock"].config.description is None


@pytest.mark.anyio
async def test_an_edit_keeps_masked_secrets_it_sends_back_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_secret = "ui-test-env-secret-77"
    monkeypatch.setenv("UI_TEST_SECRET", env_secret)
    literal = {"Authorization": "Bearer literal-tok-9931", "X-Api-Key": "literal-key-4321"}
    gateway = make_gateway(
        {"clock": memory_entry("clock", headers={**literal, "X-Plain": "plain"},
                               timeouts={"call": 7}),
         "fromenv": memory_entry("fromenv", headers={"X-Custom": "${UI_TEST_SECRET}"})},
        {"clock": hostile(), "fromenv": hostile()},
        options={"env_allow": ["UI_TEST_*"]}, db=tmp_path / "gw.db",
        allow_unauthenticated_admin=True)
    secrets_ = [env_secret, *literal.values()]
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        async def edit(name: str, **changes: str) -> httpx2.Response:
            form = await http.get(f"{base}/ui/servers/{name}/edit")
            assert form.status_code == 200
            assert not any(s in form.text for s in secrets_)
            assert "leave it as it is to keep the stored value" in form.text
            fields = _form_fields(form.text) | changes
            sent = await http.post(f"{base}/ui/servers/{name}/edit", data={
                **fields, "enabled": ["off", "on"], "csrf_token": _csrf(form.text)})
            assert not any(s in sent.text for s in secrets_)
            return sent

        # Only the description changes: the hidden headers and the settings the form
        # does not show (timeouts) stay as they were.
        done = await edit("clock", description="changed without the secrets")
        assert done.status_code == 200 and "Saved server" in done.text, done.text[-2000:]
        config = gateway.manager.services["clock"].config
        assert config.description == "changed without the secrets"
        assert config.headers == {**literal, "X-Plain": "plain"}
        assert config.timeouts.call == 7
        # Again, now from the stored registration.
        assert (await edit("clock", description="twice")).status_code == 200
        assert gateway.manager.services["clock"].config.headers["X-Api-Key"] == literal[
            "X-Api-Key"]

        # A kept secret never goes to a new host, and *** under a new name is no value.
        moved = await edit("clock", url="http://127.0.0.2:9/in-memory/clock")
        assert moved.status_code == 422 and "host changed" in moved.text
        fields_text = "Authorization: ***\nX-Api-Key: ***\nX-New: ***\nX-Plain: plain"
        unknown = await edit("clock", headers=fields_text)
        assert unknown.status_code == 422 and "X-New" in unknown.text
        assert "none stored under that name" in unknown.text

        # A value servers.yaml takes from the environment is not copied into the store.
        from_env = await edit("fromenv", description="x")
        assert from_env.status_code == 422 and "servers.yaml" in from_env.text
        # Typing the reference (allowed by env_allow) works, and a later edit keeps it
        # as written: the store holds ${UI_TEST_SECRET}, never its value.
        typed = await edit("fromenv", headers="X-Custom: ${UI_TEST_SECRET}")
        assert typed.status_code == 200, typed.text[-2000:]
        assert (await edit("fromenv", description="kept")).status_code == 200
        assert gateway.manager.services["fromenv"].config.headers["X-Custom"] == env_secret
        assert gateway.store is not None
        row = next(r for r in await gateway.store.servers() if r.name == "fromenv")
        assert row.config is not None and row.config["headers"] == {
            "X-Custom": "${UI_TEST_SECRET}"} and row.config["description"] == "kept"


@pytest.mark.anyio
async def test_a_cursor_the_gateway_did_not_issue_is_the_callers_mistake(tmp_path: Path) -> None:
    """/ui/logs?cursor=zzz was a 503 "Unavailable" page (the store's "invalid cursor"
    error reads as the store being down), and gateway_calls said only "invalid cursor"."""
    gateway = make_gateway({}, db=tmp_path / "gw.db", allow_unauthenticated_admin=True)
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        for cursor in ("zzz", "nan|1", "1.5"):
            page = await http.get(base + "/ui/logs", params={"cursor": cursor})
            assert page.status_code == 400, (cursor, page.status_code)
            assert "pass `next_cursor` from a previous page" in page.text
        async with Client(f"{base}/mcp") as client:  # a host's gateway_calls
            refused = await client.call_tool("gateway_calls", {"cursor": "zzz"},
                                             raise_on_error=False)
        assert refused.is_error
        assert refused.content[0].text == (  # type: ignore[union-attr]
            "invalid cursor 'zzz': not a cursor this gateway issued; pass `next_cursor` "
            "from a previous page (or none for the first)")
        assert (await http.get(base + "/ui/logs", params={"cursor": ""})).status_code == 200


@pytest.mark.anyio
async def test_the_overview_while_the_store_is_unreachable_does_not_say_there_is_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With PostgreSQL down the overview said both "History and statistics are
    unavailable: PostgreSQL ... is unreachable" and "Statistics are off: this gateway
    runs without a store (--no-db)"; and ?window=zzz titled its counts "last zzz"."""
    from fast_mcp_gateway.store import StorageError
    from fast_mcp_gateway.ui import views

    gateway = make_gateway({}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        page = await http.get(base + "/ui/", params={"window": "zzz"})
        assert "Requests (last hour)" in page.text and "zzz" not in page.text.split(
            'id="cards"')[0]

        async def unreachable(*_args: Any, **_kwargs: Any) -> Any:
            raise StorageError("PostgreSQL at gw@127.0.0.1:5432/gw is unreachable")

        monkeypatch.setattr(views.history, "stats", unreachable)
        page = await http.get(base + "/ui/")
        assert page.status_code == 200
        assert "History and statistics are unavailable: PostgreSQL" in page.text
        assert "--no-db" not in page.text and "Statistics are off" not in page.text
    offline = make_gateway({})  # no store at all: that is what the note is for
    async with serve_http(offline.http_app()) as base, httpx2.AsyncClient(timeout=30) as http:
        assert "Statistics are off" in (await http.get(base + "/ui/")).text


@pytest.mark.anyio
async def test_an_unknown_server_page_names_the_servers_the_viewer_may_see(
        tmp_path: Path) -> None:
    """The dashboard's 404 said "no server named 'x'" only, where REST and the admin tools
    name the caller's servers ("(known: ...)"): a viewer could not tell what to open."""
    from tests.fixtures import beta_server

    gateway = make_gateway({"other": memory_entry("other"), "beta": memory_entry("beta")},
                           {"other": beta_server(), "beta": beta_server()},
                           options={"auth": AUTH}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base:
        for token, shown in [(OPS, "other, beta"), (ALICE, "other")]:
            async with httpx2.AsyncClient(timeout=30) as http:
                await _login(http, base, token)
                # An import is refused to a restricted admin: its paste form is not
                # offered to her (why is said), as it is to ops.
                add = (await http.get(base + "/ui/add")).text
                assert ('action="/ui/import"' in add) is (token == OPS), add[-1500:]
                assert ("without a <code>servers</code>" in add) is (token == ALICE)
                for path in ("/ui/servers/nosuch", "/ui/logs?server=nosuch",
                             "/ui/inspector?server=nosuch"):
                    page = await http.get(base + path)
                    assert page.status_code == 404, (path, page.status_code)
                    assert f"no server named &#39;nosuch&#39; (known: {shown})" in page.text, \
                        page.text[-800:]
            # alice is limited to 'other': 'beta' is as unknown as 'nosuch', never named
        async with httpx2.AsyncClient(timeout=30) as http:
            await _login(http, base, ALICE)
            page = await http.get(base + "/ui/servers/beta")
            assert page.status_code == 404
            assert "no server named &#39;beta&#39; (known: other)" in page.text


@pytest.mark.anyio
async def test_form_bodies_are_bounded_as_they_arrive(tmp_path: Path) -> None:
    """The login form, which anyone may post, reads at most 64 KiB; a logged-in page's
    form 1 MiB, a chunked body (no Content-Length) too.  Before, starlette's parser held
    up to 1000 fields of 64 KiB of a login post whole (eight posts without a token took
    430 MB), and a chunked form passed the Content-Length check."""
    gateway = make_gateway({}, options={"auth": AUTH}, db=tmp_path / "gw.db")

    def chunked(fields: int, size: int) -> Any:
        async def body() -> Any:
            for i in range(fields):
                yield f"f{i}={'A' * size}&".encode()
            yield b"csrf_token=x&token=y"
        return body()

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        login = await http.post(base + "/ui/login", headers=form,
                                content=chunked(fields=100, size=1024))
        assert login.status_code == 413 and "set-cookie" not in login.headers
        assert "The form is too large." in login.text
        csrf = await _login(http, base, OPS)  # a small form is taken as before
        page = await http.post(base + "/ui/logout", headers=form,
                               content=chunked(fields=1100, size=1024))
        assert page.status_code == 413 and "The form is too large." in page.text
        out = await http.post(base + "/ui/logout", data={"csrf_token": csrf})
        assert out.status_code == 303


@pytest.mark.anyio
async def test_one_tokens_logins_do_not_end_other_viewers_sessions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logins beyond the table's cap ended the oldest session, whoever's: a tools token
    logged in again and again ended an admin's.  A token's logins past its own cap end
    its own oldest session (here: a table of 6, 2 per token)."""
    from fast_mcp_gateway.ui import session

    monkeypatch.setattr(session, "MAX_TOKEN_SESSIONS", 6)
    monkeypatch.setattr(session, "SESSIONS_PER_TOKEN", 2)
    gateway = make_gateway({}, options={"auth": AUTH}, db=tmp_path / "gw.db")
    async with serve_http(gateway.http_app()) as base, \
            httpx2.AsyncClient(timeout=30, follow_redirects=False) as ops:
        await _login(ops, base, OPS)
        bobs = []
        for _ in range(8):
            bob = httpx2.AsyncClient(timeout=30, follow_redirects=False)
            bobs.append(bob)
            await _login(bob, base, BOB)
        try:
            assert (await ops.get(base + "/ui/")).status_code == 200  # still logged in
            still = [(await bob.get(base + "/ui/")).status_code for bob in bobs]
            assert still == [303] * 6 + [200] * 2  # bob's newest two
        finally:
            for bob in bobs:
                await bob.aclose()
