"""Tokens and JWTs: configuration, constant-time digests, JWKS, the token command."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from pydantic import ValidationError

from fast_mcp_gateway.config.auth import AuthConfig, TokenEntry
from fast_mcp_gateway.config.loader import load_config
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.http.auth import GatewayVerifier, principal_of
from fast_mcp_gateway.principal import LOCAL, Principal
from tests.test_jwt_key_rotation import jwks_endpoint

pytestmark = pytest.mark.anyio

OPS = "ops-token-0123456789abcdef"
ALICE = "alice-token-0123456789abcdef"


def _config(**extra: Any) -> AuthConfig:
    return AuthConfig.model_validate({"tokens": [
        {"name": "ops", "token": OPS, "scopes": ["admin"]},
        {"name": "alice", "sha256": hashlib.sha256(ALICE.encode()).hexdigest(),
         "scopes": ["tools"], "servers": ["notes"]},
    ], **extra})


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "x", "scopes": ["tools"]}, "exactly one of 'token'"),
    ({"name": "x", "token": OPS, "sha256": "0" * 64, "scopes": ["tools"]}, "exactly one"),
    ({"name": "x", "token": "short", "scopes": ["tools"]}, "shorter than 16"),
    ({"name": "x", "sha256": "abc", "scopes": ["tools"]}, "64 hexadecimal"),
    ({"name": "x", "token": OPS, "scopes": []}, "give at least one scope: tools"),
    ({"name": "x", "token": OPS, "scopes": ["root"]}, "unknown scope 'root'; the valid"),
    ({"name": "a b", "token": OPS, "scopes": ["tools"]}, "letters, digits and _ . @ -"),
])
def test_bad_token_entries_say_what_to_fix(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TokenEntry.model_validate(entry)


def test_the_digest_form_may_be_written_as_a_prefixed_token() -> None:
    digest = hashlib.sha256(OPS.encode()).hexdigest()
    entry = TokenEntry.model_validate({"name": "x", "token": f"sha256:{digest}",
                                       "scopes": ["tools"]})
    assert entry.token is None and entry.digest == digest
    assert OPS not in repr(TokenEntry.model_validate({"name": "x", "token": OPS,
                                                      "scopes": ["tools"]}))


def test_auth_config_refuses_duplicates_and_emptiness() -> None:
    with pytest.raises(ValidationError, match="'a' is repeated with other scopes"):
        AuthConfig.model_validate({"tokens": [
            {"name": "a", "token": OPS, "scopes": ["tools"]},
            {"name": "a", "token": ALICE, "scopes": ["admin"]}]})
    with pytest.raises(ValidationError, match="same token"):
        AuthConfig.model_validate({"tokens": [
            {"name": "a", "token": OPS, "scopes": ["tools"]},
            {"name": "b", "token": OPS, "scopes": ["admin"]}]})
    with pytest.raises(ValidationError, match="needs 'tokens' or 'jwt'"):
        AuthConfig.model_validate({})


async def test_static_tokens_map_to_principals() -> None:
    verifier = GatewayVerifier(_config())
    ops = await verifier.verify_token(OPS)
    alice = await verifier.verify_token(ALICE)
    assert ops is not None and alice is not None
    assert principal_of(ops) == Principal("ops", frozenset({"admin"}), None, "token")
    assert principal_of(alice) == Principal("alice", frozenset({"tools"}),
                                            frozenset({"notes"}), "token")
    assert principal_of(ops).has("tools") and principal_of(ops).has("admin")
    assert not principal_of(alice).has("admin") and principal_of(alice).may_use("notes")
    assert not principal_of(alice).may_use("clock")
    for wrong in ("", OPS + "x", OPS[:-1], "\ud800", ALICE.upper(),
                  hashlib.sha256(ALICE.encode()).hexdigest()):
        assert await verifier.verify_token(wrong) is None
    assert LOCAL.has("admin") and LOCAL.may_use("anything")


async def test_a_tokens_standing_follows_reloads_of_its_scopes_servers_and_presence() -> None:
    """What an open session is sent between its requests is filtered by its token as the
    running config has it: narrowed by a reload, gone with the token (or its rotation)."""
    running = [_config()]
    verifier = GatewayVerifier(running[0], current=lambda: running[0])
    alice, ops = verifier.standing(ALICE), verifier.standing(OPS)
    assert alice() == Principal("alice", frozenset({"tools"}), frozenset({"notes"}), "token")
    running[0] = AuthConfig.model_validate({"tokens": [
        {"name": "ops", "token": OPS, "scopes": ["tools"], "servers": ["clock"]}]})
    assert ops() == Principal("ops", frozenset({"tools"}), frozenset({"clock"}), "token")
    assert alice() is None  # removed
    running[0] = AuthConfig.model_validate({"tokens": [
        {"name": "ops", "token": ALICE, "scopes": ["admin"]}]})
    assert ops() is None  # rotated: the name stays, the old token is dead
    assert verifier.standing("not-a-token")() is None


def test_a_jwts_standing_ends_when_it_expires_or_jwts_are_no_longer_taken() -> None:
    """A handshake-era session opened with a JWT kept getting logs and resource updates
    of its claims' servers between its requests after the JWT expired (each request of
    its own is verified again, but nothing between them was)."""
    now = [1_000.0]
    jwt = {"public_key": RSAKeyPair.generate().public_key, "issuer": "https://idp.test/",
           "audience": "mcp-gateway"}
    running = [_config(jwt=jwt)]
    verifier = GatewayVerifier(running[0], current=lambda: running[0], clock=lambda: now[0])
    ci = Principal("ci", frozenset({"tools"}), frozenset({"notes"}), "jwt")
    standing = verifier.jwt_standing(ci, 1_060)
    assert standing() == ci
    now[0] = 1_060.0
    assert standing() is None  # expired
    now[0] = 1_000.0
    assert standing() == ci
    running[0] = _config(jwt={**jwt, "issuer": "https://other-idp.test/"})
    assert standing() is None  # a reload that takes JWTs of another issuer
    running[0] = _config(jwt=jwt)
    assert standing() == ci  # the same again (each reload builds a new config)
    running[0] = _config()  # a reload that stops taking JWTs
    assert standing() is None
    assert verifier.jwt_standing(ci, None)() is None


@pytest.fixture
def jwks() -> Iterator[tuple[RSAKeyPair, str]]:
    """An RSA key (key id 'k1') and a real JWKS endpoint for it on 127.0.0.1."""
    with jwks_endpoint() as idp:
        yield idp.add("k1"), idp.url


async def test_jwts_from_a_jwks_endpoint_map_scopes_and_servers(
    jwks: tuple[RSAKeyPair, str],
) -> None:
    pair, uri = jwks
    config = _config(jwt={"jwks_uri": uri, "issuer": "https://idp.test/",
                          "audience": "mcp-gateway", "scopes_claim": "roles",
                          "servers_claim": "mcp_servers"})
    verifier = GatewayVerifier(config)

    def token(**kw: Any) -> str:
        base: dict[str, Any] = {"subject": "bob", "issuer": "https://idp.test/",
                                "audience": "mcp-gateway", "kid": "k1",
                                "additional_claims": {"roles": ["tools", "other"],
                                                      "mcp_servers": "notes clock"}}
        base.update(kw)
        return pair.create_token(**base)

    good = await verifier.verify_token(token())
    assert good is not None
    assert principal_of(good) == Principal("bob", frozenset({"tools"}),
                                           frozenset({"notes", "clock"}), "jwt")
    assert await verifier.verify_token(token(issuer="https://evil.test/")) is None
    assert await verifier.verify_token(token(audience="someone-else")) is None
    assert await verifier.verify_token(token(expires_in_seconds=-60)) is None
    stranger = RSAKeyPair.generate().create_token(subject="eve", issuer="https://idp.test/",
                                                  audience="mcp-gateway", kid="k1")
    assert await verifier.verify_token(stranger) is None
    # Fail closed: a JWT without the servers claim may use no server (identity providers
    # leave out a claim whose list would be empty), an admin's too; "*" is every server.
    admin = await verifier.verify_token(token(additional_claims={"roles": "admin"}))
    assert admin is not None and principal_of(admin).servers == frozenset()
    assert principal_of(admin).has("admin")
    assert "its 'mcp_servers' claim" in str(principal_of(admin).no_server)
    every = await verifier.verify_token(token(additional_claims={"roles": "admin",
                                                                 "mcp_servers": "*"}))
    assert every is not None and principal_of(every).servers is None
    assert principal_of(every).no_server is None


async def test_jwts_need_an_audience_and_forged_headers_get_nowhere() -> None:
    """Without 'audience' every token the identity provider issued for any application,
    with that application's scopes ('admin' is a common one), was accepted: the setting
    is required.  alg 'none' and an HS256 token keyed with the public key (algorithm
    confusion) are refused."""
    import base64
    import hmac
    import time

    pair = RSAKeyPair.generate()
    jwt = {"public_key": pair.public_key, "issuer": "https://idp.test/"}
    for audience in ({}, {"audience": ""}, {"audience": []}):
        with pytest.raises(ValidationError, match="give 'audience': the 'aud'"):
            _config(jwt={**jwt, **audience})
    verifier = GatewayVerifier(_config(jwt={**jwt, "audience": "mcp-gateway"}))

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    claims = b64(json.dumps({"sub": "eve", "iss": "https://idp.test/", "aud": "mcp-gateway",
                             "scope": "admin", "exp": int(time.time()) + 300}).encode())
    def header(alg: str) -> str:
        return b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())

    none = f"{header('none')}.{claims}."
    signed = f"{header('HS256')}.{claims}"
    key = str(pair.public_key).encode()
    confused = f"{signed}.{b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())}"
    for forged in (none, confused):
        assert await verifier.verify_token(forged) is None
    other = pair.create_token(subject="eve", issuer="https://idp.test/", audience="other-app",
                              scopes=["admin"])
    assert await verifier.verify_token(other) is None
    assert await verifier.verify_token(pair.create_token(
        subject="bob", issuer="https://idp.test/", audience="mcp-gateway")) is not None


def test_token_new_prints_a_token_once_and_the_entry_that_accepts_it() -> None:
    done = subprocess.run([sys.executable, "-m", "fast_mcp_gateway", "token", "new",
                           "--name", "alice", "--scopes", "tools", "--servers", "notes,clock"],
                          capture_output=True, text=True, timeout=60, check=True)
    lines = done.stdout.splitlines()
    token = lines[1].split()[-1]
    assert token.startswith("mgw_") and len(token) > 40
    entry = "\n".join(line for line in lines if not line.startswith("#"))
    assert f"sha256: {hashlib.sha256(token.encode()).hexdigest()}" in entry
    assert "scopes: [tools]" in entry and "servers: [notes, clock]" in entry
    assert done.stdout.count(token) == 1
    bad = subprocess.run([sys.executable, "-m", "fast_mcp_gateway", "token", "new",
                          "--name", "x", "--scopes", "root"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--scopes: unknown scope 'root'" in bad.stderr


def test_an_entry_pasted_at_the_margin_is_told_to_be_indented(tmp_path: Path) -> None:
    """'token new' prints its entry at the margin; pasted so under 'tokens:' (as the
    README says: "paste the printed entry under gateway.auth.tokens") the file was
    refused with YAML's "expected <block end>, but found '-'" and nothing on what to do."""
    done = subprocess.run([sys.executable, "-m", "fast_mcp_gateway", "token", "new",
                           "--name", "ops", "--scopes", "admin"],
                          capture_output=True, text=True, timeout=60, check=True)
    entry = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    head = "gateway:\n  auth:\n    tokens:\n"
    config = tmp_path / "servers.yaml"
    config.write_text(head + "\n".join(entry) + "\nservers: {}\n")
    with pytest.raises(ConfigError) as pasted:
        load_config(config, environ={})
    assert "line 4, column 1" in str(pasted.value)
    assert "this list item ('- ...') is indented less than the key it belongs to: indent " \
           "it, and the rest of its entry, at least as far as that key" in str(pasted.value)
    config.write_text(head + "".join(f"      {line}\n" for line in entry) + "servers: {}\n")
    auth = load_config(config, environ={}).options.auth
    assert auth is not None and [t.name for t in auth.tokens] == ["ops"]


def test_token_new_prints_the_entry_a_json_config_takes(tmp_path: Path) -> None:
    """A Claude-Desktop config is JSON, and 'token new' printed its entry as YAML lines
    alone: pasted into the file they broke it.  Its JSON form, pasted under
    gateway.auth.tokens next to mcpServers, accepts the token."""
    done = subprocess.run([sys.executable, "-m", "fast_mcp_gateway", "token", "new",
                           "--name", "ops", "--scopes", "admin", "--servers", "time"],
                          capture_output=True, text=True, timeout=60, check=True)
    token = done.stdout.splitlines()[1].split()[-1]
    marker = '"gateway": {"auth": {"tokens": [...]}}: '
    json_line = next(line for line in done.stdout.splitlines() if marker in line)
    entry = json.loads(json_line.split(marker, 1)[1])
    config = tmp_path / "claude_desktop_config.json"
    config.write_text(json.dumps({"gateway": {"auth": {"tokens": [entry]}}, "mcpServers": {
        "time": {"command": sys.executable, "args": ["-m", "mcp_server_time"]}}}))
    auth = load_config(config, environ={}).options.auth
    assert auth is not None
    (accepted,) = auth.tokens
    assert (accepted.name, list(accepted.scopes), list(accepted.servers or ())) == (
        "ops", ["admin"], ["time"])
    assert accepted.digest == hashlib.sha256(token.encode()).hexdigest()


def test_servers_yaml_takes_tokens_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "servers.yaml"
    config.write_text("gateway:\n  auth:\n    tokens:\n"
                      "      - {name: ops, token: '${GW_T_OPS}', scopes: [admin]}\n"
                      "      - {name: bob, token: '${GW_T_BOB}', scopes: [tools]}\n"
                      "servers: {}\n")
    with pytest.raises(ConfigError) as missing:
        load_config(config, environ={"GW_T_OPS": OPS})
    assert str(missing.value).count("\n") == 0  # one problem, not a derived second one
    assert "gateway.auth.tokens[1].token" in str(missing.value) and "GW_T_BOB" in str(
        missing.value)
    loaded = load_config(config, environ={"GW_T_OPS": OPS, "GW_T_BOB": ALICE})
    assert loaded.options.auth is not None
    assert [t.name for t in loaded.options.auth.tokens] == ["ops", "bob"]
    assert OPS not in repr(loaded.options) and ALICE not in repr(loaded)


async def test_removed_tokens_are_remembered_by_digest_and_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fast_mcp_gateway.http import auth, jwt_refusals
    monkeypatch.setattr(auth, "REMOVED_TOKENS", 1)
    running = [_config()]
    verifier = GatewayVerifier(running[0], current=lambda: running[0])
    running[0] = AuthConfig.model_validate({"tokens": [
        {"name": "ops", "token": OPS, "scopes": ["admin"]}]})
    assert await verifier.verify_token(ALICE) is None
    assert jwt_refusals.refusal.get() == auth.REMOVED
    assert ALICE not in repr(verifier._removed)  # digests only
    running[0] = AuthConfig.model_validate({"tokens": [
        {"name": "alice", "token": ALICE, "scopes": ["tools"]}]})  # OPS out, ALICE back
    assert await verifier.verify_token(ALICE) is not None
    assert await verifier.verify_token(OPS) is None
    assert jwt_refusals.refusal.get() == auth.REMOVED
    # ALICE out: OPS forgotten.  (Not a token of x's: a config token is a secret masked
    # in every text for the rest of the process, and other tests log runs of x's.)
    running[0] = AuthConfig.model_validate({"tokens": [
        {"name": "x", "token": "mgw_removal-3c9a7e51d2", "scopes": ["tools"]}]})
    assert await verifier.verify_token(OPS) is None
    assert jwt_refusals.refusal.get() is None
    assert len(verifier._removed) == 1
