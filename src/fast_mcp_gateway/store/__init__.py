"""Persistence: call records, aggregates, audit, health and inspector history,
registrations and routes -- interfaces in base.py, records in records.py, one module
per backend.

``open_store(url)`` picks the backend:

- ``sqlite:///abs/path/gateway.db`` or a bare path (``gateway.db``, ``/var/lib/g.db``):
  the SQLite file, created when missing (sqlite.py);
- ``sqlite:///:memory:``: SQLite without a file (everything is lost at close);
- ``memory://``: the in-memory backend (memory.py), for tests and demos;
- ``postgresql://user[:password]@host[:port]/db`` (also ``postgres://``): the shared
  PostgreSQL backend (postgres.py; needs the ``postgres`` extra, asyncpg), for several
  gateways on one state.

``open_or_defer(url)`` is ``open_store`` for a gateway starting: a store that cannot be
reached now is a ``DeferredStore`` (deferred.py), opened once it answers.
"""

from __future__ import annotations

import os
import re
from typing import cast

from fast_mcp_gateway.store.base import (
    AlertStore,
    AuditStore,
    ControlPlaneStore,
    HealthStore,
    InspectionStore,
    InvocationStore,
    StorageError,
    Store,
    StoreUnavailable,
)
from fast_mcp_gateway.store.deferred import DeferredStore
from fast_mcp_gateway.store.eras import EraName, EraNeed, EraStore
from fast_mcp_gateway.store.memory import MemoryStore
from fast_mcp_gateway.store.records import (
    AlertEvent,
    AlertRuleRecord,
    AuditEntry,
    Change,
    ChangeBatch,
    HealthRecord,
    InspectionRecord,
    Invocation,
    Lease,
    Registration,
    RouteMatch,
    RouteRecord,
)
from fast_mcp_gateway.store.sqlite import SQLiteStore
from fast_mcp_gateway.store.stats import LatencyStats

__all__ = [
    "SUPPORTED",
    "AlertEvent",
    "AlertRuleRecord",
    "AlertStore",
    "AuditEntry",
    "AuditStore",
    "Change",
    "ChangeBatch",
    "ControlPlaneStore",
    "DeferredStore",
    "EraName",
    "EraNeed",
    "EraStore",
    "HealthRecord",
    "HealthStore",
    "InspectionRecord",
    "InspectionStore",
    "Invocation",
    "InvocationStore",
    "LatencyStats",
    "Lease",
    "MemoryStore",
    "Registration",
    "RouteMatch",
    "RouteRecord",
    "SQLiteStore",
    "StorageError",
    "Store",
    "StoreUnavailable",
    "is_url",
    "open_or_defer",
    "open_store",
]

SUPPORTED = ("sqlite:///ABSOLUTE/PATH, a bare file path, sqlite:///:memory:, memory:// or "
             "postgresql://USER@HOST:PORT/DB")

# Two letters at least: "C:\..." is a Windows path, not a URL.
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]+):(?P<rest>.*)", re.DOTALL)


async def open_store(url: str | os.PathLike[str]) -> Store:
    """Open the store ``url`` names (see the module docstring); a ``StorageError`` says
    what is wrong with a URL or with the store behind it."""
    text = os.fspath(url)
    match = _SCHEME.fullmatch(text)
    if match is None:
        return await SQLiteStore.open(text)
    scheme, rest = match["scheme"].lower(), match["rest"]
    if scheme == "sqlite":
        path = _sqlite_path(text, rest)
        return await SQLiteStore.open(path, allow_memory=path == ":memory:")
    if scheme == "memory":
        if rest.strip("/"):
            raise StorageError(f"store URL {text!r}: memory:// takes nothing after it")
        return MemoryStore()
    if scheme in {"postgresql", "postgres", "postgresql+asyncpg"}:
        # Imported here: SQLite must not need (or load) asyncpg.
        from fast_mcp_gateway.store.postgres import PostgresStore

        return await PostgresStore.open(text)
    raise StorageError(f"store URL {_without_password(text)!r}: unknown scheme "
                       f"{match['scheme']!r}; use {SUPPORTED} (a file whose name has a "
                       "colon: write it as ./NAME)")


async def open_or_defer(url: str) -> Store:
    """``open_store(url)``; a store that cannot be reached now is a ``DeferredStore``
    (the caller starts without it; ``DeferredStore.connect`` opens it later).  Any other
    failure is raised: a bad URL, password, database or role is not waited out."""
    try:
        return await open_store(url)
    except StoreUnavailable as exc:
        return cast(Store, DeferredStore(url, exc, lambda: open_store(url)))


def _sqlite_path(url: str, rest: str) -> str:
    """The file of a sqlite URL.  Also takes the one-slash form a ``pathlib.Path`` makes
    of ``sqlite:///x`` (settings hold the db as a Path) and SQLAlchemy's four slashes."""
    if rest.startswith("//"):
        rest = rest[2:]
        if rest and not rest.startswith("/"):
            host = rest.split("/", 1)[0]
            raise StorageError(f"store URL {url!r}: a sqlite URL has no host ({host!r}); "
                               "write sqlite:///ABSOLUTE/PATH")
    if rest in {"/:memory:", ":memory:"}:
        return ":memory:"
    if not rest.strip("/"):
        raise StorageError(f"store URL {url!r} names no file; write sqlite:///ABSOLUTE/PATH")
    return "/" + rest.lstrip("/") if rest.startswith("/") else rest


def is_url(db: str | os.PathLike[str]) -> bool:
    """True when ``db`` names a store by URL rather than by file path."""
    return _SCHEME.fullmatch(os.fspath(db)) is not None


def _without_password(url: str) -> str:
    """The URL with any password replaced, fit for an error message."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)
