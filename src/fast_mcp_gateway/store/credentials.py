"""A server's sign-in kept in the store: one ``upstream_credentials`` row per (server,
owner), its secrets sealed (``store/sealing.py``).

A row says where its tokens come from (``issuer``, ``token_endpoint``,
``revocation_endpoint``, ``resource``, ``scopes``, ``redirect_uri``) and until when
(``expires_at``); only ``sealed`` holds secrets (access and refresh tokens, a registered
client's secret), as ``sealing.CredentialSeal`` sealed them: the store never holds a
secret in clear, so its backups and a shared PostgreSQL do not either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

OWNER_GATEWAY = "gateway"  # one sign-in for every caller (``auth: {per: gateway}``)


@dataclass(frozen=True, kw_only=True)
class StoredCredential:
    """One server's sign-in for one owner; ``sealed`` is ``CredentialSeal.seal``'s text."""

    server: str
    owner: str
    issuer: str | None
    token_endpoint: str | None
    revocation_endpoint: str | None
    resource: str | None
    scopes: str | None  # space-separated, as OAuth writes them
    redirect_uri: str | None
    expires_at: float | None  # unix seconds, the access token's
    sealed: str
    updated_at: float
    updated_by: str

    def __repr__(self) -> str:  # never the sealed text in a log line or a traceback
        return f"StoredCredential(server={self.server!r}, owner={self.owner!r})"


COLUMNS = ("server, owner, issuer, token_endpoint, revocation_endpoint, resource, scopes, "
           "redirect_uri, expires_at, sealed, updated_at, updated_by")


def _row(c: StoredCredential) -> tuple[Any, ...]:
    return (c.server, c.owner, c.issuer, c.token_endpoint, c.revocation_endpoint, c.resource,
            c.scopes, c.redirect_uri, c.expires_at, c.sealed, c.updated_at, c.updated_by)


def _record(row: Sequence[Any]) -> StoredCredential:
    (server, owner, issuer, token_endpoint, revocation_endpoint, resource, scopes,
     redirect_uri, expires_at, sealed, updated_at, updated_by) = row
    return StoredCredential(
        server=server, owner=owner, issuer=issuer, token_endpoint=token_endpoint,
        revocation_endpoint=revocation_endpoint, resource=resource, scopes=scopes,
        redirect_uri=redirect_uri, expires_at=expires_at, sealed=sealed,
        updated_at=updated_at, updated_by=updated_by)


class CredentialStore(Protocol):
    """The sign-ins of servers with ``auth:``, one per (server, owner)."""

    async def credentials(self) -> list[StoredCredential]:
        """Every row, by server then owner."""
        ...

    async def credential(self, server: str, owner: str) -> StoredCredential | None:
        """The row of (``server``, ``owner``), or None."""
        ...

    async def put_credential(self, row: StoredCredential) -> None:
        """Keep ``row``, replacing the one of its (server, owner)."""
        ...

    async def replace_credential(self, row: StoredCredential, read_at: float) -> bool:
        """Keep ``row`` over the one of its (server, owner) only if that one is still
        the one stored at ``read_at`` (no insert): whether it was."""
        ...

    async def delete_credentials(self, server: str, owner: str | None = None) -> int:
        """Forget ``server``'s row of ``owner`` (None: every owner's); how many went."""
        ...


class SQLiteCredentials:
    """``CredentialStore`` on the SQLite file (``SQLiteStore``'s ``_db``)."""

    _db: Any  # sqlite_connection.StoreConnection

    async def credentials(self) -> list[StoredCredential]:
        rows = await self._db.rows(f"SELECT {COLUMNS} FROM upstream_credentials"
                                   " ORDER BY server, owner")
        return [_record(row) for row in rows]

    async def credential(self, server: str, owner: str) -> StoredCredential | None:
        rows = await self._db.rows(f"SELECT {COLUMNS} FROM upstream_credentials"
                                   " WHERE server = ? AND owner = ?", (server, owner))
        return _record(rows[0]) if rows else None

    async def put_credential(self, row: StoredCredential) -> None:
        await self._db.run(f"INSERT OR REPLACE INTO upstream_credentials ({COLUMNS})"
                           f" VALUES ({', '.join('?' * 12)})", _row(row))

    async def replace_credential(self, row: StoredCredential, read_at: float) -> bool:
        sets = ", ".join(f"{c} = ?" for c in COLUMNS.split(", ")[2:])
        cur = await self._db.run(
            f"UPDATE upstream_credentials SET {sets} WHERE server = ? AND owner = ?"
            " AND updated_at = ?", (*_row(row)[2:], row.server, row.owner, read_at))
        return int(cur.rowcount) > 0

    async def delete_credentials(self, server: str, owner: str | None = None) -> int:
        cur = await self._db.run(
            "DELETE FROM upstream_credentials WHERE server = ?"
            + (" AND owner = ?" if owner is not None else ""),
            (server,) if owner is None else (server, owner))
        return int(cur.rowcount)


class PgCredentials:
    """``CredentialStore`` on PostgreSQL (``PostgresStore``'s connections)."""

    _conn: Callable[[], AbstractAsyncContextManager[Any]]
    _written: Callable[[], AbstractAsyncContextManager[Any]]

    async def credentials(self) -> list[StoredCredential]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {COLUMNS} FROM upstream_credentials"
                                    " ORDER BY server, owner")
        return [_record(tuple(row)) for row in rows]

    async def credential(self, server: str, owner: str) -> StoredCredential | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {COLUMNS} FROM upstream_credentials"
                                      " WHERE server = $1 AND owner = $2", server, owner)
        return None if row is None else _record(tuple(row))

    async def put_credential(self, row: StoredCredential) -> None:
        updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS.split(", ")[2:])
        async with self._written() as conn:
            await conn.execute(
                f"INSERT INTO upstream_credentials ({COLUMNS}) VALUES"
                f" ({', '.join(f'${n}' for n in range(1, 13))})"
                f" ON CONFLICT (server, owner) DO UPDATE SET {updates}", *_row(row))

    async def replace_credential(self, row: StoredCredential, read_at: float) -> bool:
        names = COLUMNS.split(", ")[2:]
        sets = ", ".join(f"{c} = ${n}" for n, c in enumerate(names, 1))
        n = len(names)
        async with self._written() as conn:
            status = await conn.execute(
                f"UPDATE upstream_credentials SET {sets} WHERE server = ${n + 1}"
                f" AND owner = ${n + 2} AND updated_at = ${n + 3}",
                *_row(row)[2:], row.server, row.owner, read_at)
        return int(str(status).rsplit(" ", 1)[-1] or 0) > 0

    async def delete_credentials(self, server: str, owner: str | None = None) -> int:
        async with self._written() as conn:
            status = await conn.execute(
                "DELETE FROM upstream_credentials WHERE server = $1"
                + (" AND owner = $2" if owner is not None else ""),
                *((server,) if owner is None else (server, owner)))
        return int(str(status).rsplit(" ", 1)[-1] or 0)


class MemoryCredentials:
    """``CredentialStore`` in memory (``MemoryStore``: a run without a store)."""

    def __init__(self) -> None:
        self._credentials: dict[tuple[str, str], StoredCredential] = {}

    async def credentials(self) -> list[StoredCredential]:
        return [row for _, row in sorted(self._credentials.items())]

    async def credential(self, server: str, owner: str) -> StoredCredential | None:
        return self._credentials.get((server, owner))

    async def put_credential(self, row: StoredCredential) -> None:
        self._credentials[row.server, row.owner] = row

    async def replace_credential(self, row: StoredCredential, read_at: float) -> bool:
        old = self._credentials.get((row.server, row.owner))
        if old is None or old.updated_at != read_at:
            return False
        self._credentials[row.server, row.owner] = row
        return True

    async def delete_credentials(self, server: str, owner: str | None = None) -> int:
        gone = [k for k in self._credentials if k[0] == server and owner in (None, k[1])]
        for key in gone:
            del self._credentials[key]
        return len(gone)

