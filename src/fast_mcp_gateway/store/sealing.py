"""Sealing a sign-in's secrets before they reach the store (``store/credentials.py``).

AES-256-GCM (the SDK's ``AESGCMRequestStateCodec``, already used for task ids, imported
on first use) under keys derived for this use only (HMAC-SHA256 of each configured key
with ``DOMAIN``), a key ring whose first key seals and every key opens (rotation as
``request_state_keys``).  A row sealed with a key no longer configured does not open
(``SealBroken``: its server is to be signed in again, or the key restored).

Where the keys come from: ``MCP_GATEWAY_CREDENTIAL_KEYS`` (required with PostgreSQL:
every gateway on the database opens every row), else ``KEY_FILE`` beside the SQLite file,
made on first use with mode 0600 (``key_file``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fast_mcp_gateway.store.base import StorageError
from fast_mcp_gateway.store.credentials import StoredCredential

DOMAIN = b"fast-mcp-gateway/upstream-credentials/v1"
KEY_FILE = "credential.keys"
MIN_KEY_BYTES = 32
"""The shortest key sealing sign-ins: ``MCP_GATEWAY_CREDENTIAL_KEYS``'s rule, the file's."""


class SealBroken(StorageError):
    """A sealed sign-in does not open with the configured keys."""


class CredentialSeal:
    """Seals and opens the secrets of a sign-in (module docstring)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("sealing sign-ins needs at least one key")
        from mcp.server.request_state import AESGCMRequestStateCodec

        self._codec = AESGCMRequestStateCodec([
            hmac.new(key.encode(), DOMAIN, hashlib.sha256).hexdigest() for key in keys])

    def seal(self, server: str, owner: str, secrets_: dict[str, Any]) -> str:
        """``secrets_`` as sealed text, bound to its (server, owner): a row copied to
        another server's does not open there."""
        return self._codec.seal(json.dumps({"s": server, "o": owner, "v": secrets_}).encode())

    def open(self, row: StoredCredential) -> dict[str, Any]:
        """The secrets ``row`` holds, or ``SealBroken`` saying what to do."""
        from mcp.server.request_state import InvalidRequestState

        try:
            data = json.loads(self._codec.unseal(row.sealed))
        except (InvalidRequestState, ValueError):
            data = None
        if not isinstance(data, dict) or data.get("s") != row.server \
                or data.get("o") != row.owner or not isinstance(data.get("v"), dict):
            raise SealBroken(
                f"the stored sign-in of server '{row.server}' was sealed with a key this "
                "gateway does not have: sign in again, or restore the key "
                f"(MCP_GATEWAY_CREDENTIAL_KEYS, or the {KEY_FILE} file beside the store)")
        value: dict[str, Any] = data["v"]
        return value


def key_file(folder: Path) -> str:
    """The key in ``folder``/``KEY_FILE``, made (0600, its folder 0700) when absent.

    A file others may read or write (group or other permissions), or of another user,
    is refused as ssh refuses such a private key: whoever reads it opens every stored
    sign-in, and whoever wrote it knows the key.  Made, it is published only where none
    is yet (``os.link``): a gateway and ``mcp-gateway login`` making one at once agree on
    the first (a replace overwrote it, and what it had sealed no longer opened)."""
    path = folder / KEY_FILE
    try:
        with open(path, encoding="utf-8") as found:
            _private(path, os.fstat(found.fileno()))
            text = found.read().strip()
    except FileNotFoundError:
        pass
    except UnicodeDecodeError:  # (its words quote a byte of the file)
        raise StorageError(f"the credential key {path} is not text: write the key back, or "
                           "set MCP_GATEWAY_CREDENTIAL_KEYS") from None
    except OSError as exc:
        raise StorageError(f"cannot read the credential key {path}: {exc.strerror}; fix its "
                           "permissions, or set MCP_GATEWAY_CREDENTIAL_KEYS") from None
    else:
        if not text:
            raise StorageError(f"the credential key {path} is empty: write the key back, or "
                               "delete the file (a new key is made; servers signed in under "
                               "the old one sign in again)")
        if len(text.encode()) < MIN_KEY_BYTES:  # (as MCP_GATEWAY_CREDENTIAL_KEYS's)
            raise StorageError(
                f"the credential key {path} is too short ({len(text.encode())} bytes; a key "
                f"needs at least {MIN_KEY_BYTES} bytes of secret randomness): write the key "
                "back, or delete the file (a new key is made; servers signed in under the "
                "old one sign in again)")
        return text
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        made = secrets.token_hex(32)
        temp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(made + "\n")
            try:
                os.link(temp, path)
            except FileExistsError:
                return key_file(folder)  # another process made one first: its key
            except OSError:  # no hard links on this file system (FAT, some SMB mounts)
                if os.path.lexists(path):
                    return key_file(folder)
                os.replace(temp, path)  # (the race the link closes stays open there)
        finally:
            if os.path.lexists(temp):
                os.unlink(temp)
    except OSError as exc:
        raise StorageError(f"cannot write the credential key {path}: {exc.strerror}; make "
                           "the folder writable, or set MCP_GATEWAY_CREDENTIAL_KEYS") from None
    return made


def _private(path: Path, found: os.stat_result) -> None:
    """``StorageError`` unless the key file is the gateway user's own, for it alone."""
    if found.st_uid != os.geteuid():
        raise StorageError(
            f"the credential key {path} belongs to another user (uid {found.st_uid}), not "
            "to the user the gateway runs as: whoever wrote it knows the key; delete it "
            "(a new one is made) or give it to this user, or set MCP_GATEWAY_CREDENTIAL_KEYS")
    if found.st_mode & 0o077:
        raise StorageError(
            f"the credential key {path} may be read or written by other users (mode "
            f"{stat.S_IMODE(found.st_mode):04o}); it opens every stored sign-in: run "
            f"'chmod 600 {path}', or set MCP_GATEWAY_CREDENTIAL_KEYS")


def credential_keys(configured: Sequence[str], db: str | None, shared: bool) -> list[str]:
    """The keys sign-ins are sealed with: ``configured`` (``MCP_GATEWAY_CREDENTIAL_KEYS``),
    else the key file beside the SQLite file ``db``.  A shared store (PostgreSQL) needs
    them configured, the same on every gateway; ``StorageError`` says so."""
    if configured:
        return list(configured)
    if shared or db is None or "://" in db:
        raise StorageError(
            "servers sign in with auth: and the store is shared: set "
            "MCP_GATEWAY_CREDENTIAL_KEYS (the same on every gateway; make one with "
            "python -c \"import secrets; print(secrets.token_hex(32))\")")
    return [key_file(Path(db).expanduser().parent)]
