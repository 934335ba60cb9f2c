"""Servers' sign-ins in the store (store/credentials.py, store/sealing.py): the
``upstream_credentials`` rows on every backend (a SQLite file, memory, a real
PostgreSQL), sealed so that the store never holds a token in clear; the migration from
schema 13; the keys (setting, or a 0600 file beside the SQLite file) and the words when
a row does not open."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from pydantic import ValidationError

from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.store import StorageError, Store, open_store
from fast_mcp_gateway.store.credentials import OWNER_GATEWAY, StoredCredential
from fast_mcp_gateway.store.sealing import KEY_FILE, CredentialSeal, SealBroken, credential_keys
from tests.fixtures import as_schema_version
from tests.test_store_contract import store  # noqa: F401 - every backend, opened

pytestmark = pytest.mark.anyio

KEY = "k" * 40
SECRETS = {"access_token": "access-token-value-0123456789",
           "refresh_token": "refresh-token-value-0123456789", "client_secret": "dcr-secret-1"}


def row(server: str, seal: CredentialSeal, owner: str = OWNER_GATEWAY,
        at: float = 1000.0) -> StoredCredential:
    return StoredCredential(
        server=server, owner=owner, issuer="https://as.example", resource="https://up/mcp",
        token_endpoint="https://as.example/token", revocation_endpoint=None,
        scopes="read write", redirect_uri="http://127.0.0.1:8767/oauth/callback",
        expires_at=at + 3600, sealed=seal.seal(server, owner, SECRETS), updated_at=at,
        updated_by="cli")


async def test_a_sign_in_is_kept_replaced_listed_and_forgotten(store: Store) -> None:  # noqa: F811
    seal = CredentialSeal([KEY])
    assert await store.credentials() == []
    await store.put_credential(row("linear", seal))
    await store.put_credential(row("github", seal))
    await store.put_credential(row("github", seal, owner="alice"))
    newer = row("linear", seal, at=2000.0)
    await store.put_credential(newer)  # replaces the (server, owner) row
    assert [(c.server, c.owner) for c in await store.credentials()] == [
        ("github", "alice"), ("github", "gateway"), ("linear", "gateway")]
    got = await store.credential("linear", OWNER_GATEWAY)
    assert got == newer and seal.open(got) == SECRETS
    assert await store.credential("linear", "alice") is None
    assert await store.delete_credentials("github", "alice") == 1
    assert await store.delete_credentials("github") == 1
    assert await store.delete_credentials("github") == 0
    assert [c.server for c in await store.credentials()] == ["linear"]
    assert "access-token" not in repr(got)


async def test_a_refresh_replaces_only_the_row_it_read(store: Store) -> None:  # noqa: F811
    seal = CredentialSeal([KEY])  # (a sign-out meanwhile is not undone: no row made again)
    assert not await store.replace_credential(row("linear", seal, at=2000.0), 1000.0)
    assert await store.credential("linear", OWNER_GATEWAY) is None
    await store.put_credential(row("linear", seal))
    assert not await store.replace_credential(row("linear", seal, at=3000.0), 999.0)
    assert await store.replace_credential(row("linear", seal, at=2000.0), 1000.0)
    got = await store.credential("linear", OWNER_GATEWAY)
    assert got is not None and got.updated_at == 2000.0 and seal.open(got) == SECRETS
    await store.delete_credentials("linear")
    assert not await store.replace_credential(row("linear", seal, at=3000.0), 2000.0)
    assert await store.credentials() == []


async def test_the_sqlite_file_never_holds_a_secret_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    store = await open_store(f"sqlite://{path}")  # noqa: F811
    seal = CredentialSeal([KEY])
    await store.put_credential(row("linear", seal))
    await store.close()
    files = [p for p in tmp_path.iterdir() if p.is_file()]  # noqa: ASYNC240 (test epilogue)
    data = b"".join([await anyio.Path(p).read_bytes() for p in files])
    for value in SECRETS.values():
        assert value.encode() not in data
    assert b"https://as.example/token" in data  # where tokens come from is no secret


async def test_a_row_sealed_with_another_key_says_how_to_sign_in_again() -> None:
    sealed = row("linear", CredentialSeal([KEY]))
    rotated = CredentialSeal(["n" * 40, KEY])  # a new first key: old rows still open
    assert rotated.open(sealed) == SECRETS
    assert CredentialSeal(["n" * 40]).open(row("linear", rotated)) == SECRETS  # sealed: new
    with pytest.raises(SealBroken) as caught:
        CredentialSeal(["z" * 40]).open(sealed)
    text = str(caught.value)
    assert "the stored sign-in of server 'linear' was sealed with a key this gateway does " \
           "not have: sign in again, or restore the key" in text
    assert "MCP_GATEWAY_CREDENTIAL_KEYS" in text
    with pytest.raises(SealBroken):  # a row moved to another server does not open there
        CredentialSeal([KEY]).open(replace(sealed, server="github"))


async def test_a_schema_13_file_gains_the_table(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from fast_mcp_gateway.store import sqlite_schema
    from fast_mcp_gateway.store.sqlite import SQLiteStore

    path = tmp_path / "old.db"
    with monkeypatch.context() as patch:  # a file exactly as version 13 left it
        as_schema_version(patch, 13)
        old = await SQLiteStore.open(path)
        assert await old.schema_version() == 13
        await old.close()
    store = await SQLiteStore.open(path)  # noqa: F811
    try:
        assert await store.schema_version() == sqlite_schema.SCHEMA_VERSION == 14
        await store.put_credential(row("linear", CredentialSeal([KEY])))
        assert await store.count("upstream_credentials") == 1
    finally:
        await store.close()


async def test_a_schema_13_database_gains_the_table(pg_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from fast_mcp_gateway.store import postgres_schema as schema
    from fast_mcp_gateway.store.postgres import PostgresStore

    with monkeypatch.context() as old:
        old.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:13])
        old.setattr(schema, "SCHEMA_VERSION", 13)
        store = await PostgresStore.open(pg_url)
        assert await store.schema_version() == 13
        await store.close()
    store = await PostgresStore.open(pg_url)
    try:
        assert await store.schema_version() == schema.SCHEMA_VERSION == 14
        await store.put_credential(row("linear", CredentialSeal([KEY])))
        assert await store.count("upstream_credentials") == 1
    finally:
        await store.close()


def test_the_key_is_the_setting_else_a_private_file_beside_the_sqlite_file(
        tmp_path: Path) -> None:
    assert credential_keys([KEY], "postgresql://u@h/db", shared=True) == [KEY]
    db = tmp_path / "data" / "gateway.db"
    made = credential_keys([], str(db), shared=False)
    key_path = db.parent / KEY_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert credential_keys([], str(db), shared=False) == made and len(made[0]) == 64
    with pytest.raises(StorageError, match="set MCP_GATEWAY_CREDENTIAL_KEYS \\(the same on "
                                           "every gateway"):
        credential_keys([], "postgresql://u@h/db", shared=True)


def test_a_short_credential_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as caught:
        GatewaySettings(credential_keys="short-key-value")
    assert "needs at least 32 bytes" in str(caught.value)
    assert "short-key-value" not in str(caught.value)
    keys = GatewaySettings(credential_keys=f"{KEY},{'m' * 32}").credential_keys
    assert [k.get_secret_value() for k in keys] == [KEY, "m" * 32]


def test_a_key_file_others_may_read_or_another_user_wrote_is_refused(tmp_path: Path) -> None:
    """As ssh refuses such a private key: whoever reads the file opens every stored
    sign-in (sec29: it was used as found, mode 0644 or another user's); one empty, too
    short or not text is refused too."""
    db = tmp_path / "gateway.db"
    key_path = tmp_path / KEY_FILE
    key_path.write_text(KEY + "\n")
    key_path.chmod(0o644)
    with pytest.raises(StorageError) as caught:
        credential_keys([], str(db), shared=False)
    assert f"the credential key {key_path} may be read or written by other users (mode " \
           f"0644); it opens every stored sign-in: run 'chmod 600 {key_path}', or set " \
           "MCP_GATEWAY_CREDENTIAL_KEYS" in str(caught.value)
    assert KEY not in str(caught.value)
    key_path.chmod(0o600)
    assert credential_keys([], str(db), shared=False) == [KEY]
    if os.geteuid() == 0:  # (only root can give a file away)
        os.chown(key_path, 4242, -1)
        with pytest.raises(StorageError, match="belongs to another user \\(uid 4242\\)"):
            credential_keys([], str(db), shared=False)
        os.chown(key_path, 0, -1)
    key_path.write_text("")
    with pytest.raises(StorageError, match="is empty: write the key back, or delete the file"):
        credential_keys([], str(db), shared=False)
    key_path.write_text("hunter2\n")  # (trial15: a weak key sealed every sign-in)
    with pytest.raises(StorageError) as caught:
        credential_keys([], str(db), shared=False)
    assert str(caught.value) == f"the credential key {key_path} is too short (7 bytes; a " \
        "key needs at least 32 bytes of secret randomness): write the key back, or delete " \
        "the file (a new key is made; servers signed in under the old one sign in again)"
    key_path.write_bytes(b"\xff\xfe" + bytes(range(128, 192)))
    with pytest.raises(StorageError) as caught:  # not a UnicodeDecodeError quoting a byte
        credential_keys([], str(db), shared=False)
    assert str(caught.value) == f"the credential key {key_path} is not text: write the " \
        "key back, or set MCP_GATEWAY_CREDENTIAL_KEYS"


def test_two_processes_making_the_key_at_once_keep_the_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway and ``mcp-gateway login`` on one folder, both finding no key file: the
    second's key does not replace the first's (sec29: it did, and what the first had
    sealed no longer opened)."""
    from fast_mcp_gateway.store import sealing

    theirs, key_path = "t" * 64, tmp_path / KEY_FILE
    token_hex = sealing.secrets.token_hex

    def another_process_first(n: int) -> str:  # it publishes its key meanwhile
        if not key_path.exists():
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, f"{theirs}\n".encode())
            os.close(fd)
        return token_hex(n)

    monkeypatch.setattr(sealing.secrets, "token_hex", another_process_first)
    assert credential_keys([], str(tmp_path / "gateway.db"), shared=False) == [theirs]
    assert key_path.read_text() == f"{theirs}\n"
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left
