"""Runtime registrations whose namespace another server has now, warned of once a clash.

Two servers may not share a namespace: the check that refuses it runs when a server is
registered at runtime or the config file is loaded, each against what ran then.  A
registration made before can meet a server sharing its namespace later: the other added
to the file since (a hot reload), registered on another gateway of a shared store, or
its own accented name transliterated (``café``, namespaced ``caf_`` when it was
registered, is ``cafe`` now).  Both run; their components named alike collide (the
later gets a hash suffix).  ``NamespaceClashes.check`` runs on every merge of the file
with the registrations (``ControlPlane._merge``: at start, at each reload, and as other
gateways' changes are applied), and says each clash once, for as long as it lasts (one
that ends and comes back is said again).  A disabled server runs nothing, so it clashes
with none.

``FileEdits``, run by the same check, says an edit of ``servers.yaml`` that cannot apply:
the entry of a server a runtime registration overrides, or one removed at runtime (a
``TOMBSTONE``), changed or added by the file since the last merge.  The reload answered
"no change" and said nothing else, so an operator's edit was dropped without a word.
Only an edit is said: an override made on purpose (``gateway_update_server`` of a file's
server) is not repeated at every start (``mcp-gateway servers`` shows it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from fast_mcp_gateway.config.names import ascii_replaced, shown_name
from fast_mcp_gateway.config.registrations import TOMBSTONE
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.store import Registration
from fast_mcp_gateway.telemetry.redaction import mask_text

logger = logging.getLogger("fast_mcp_gateway.admin.control")  # the control plane's words


def runtime_servers(file_servers: Mapping[str, ServerConfig],
                    registrations: Sequence[Registration],
                    desired: Mapping[str, ServerConfig]) -> list[str]:
    """The servers of ``desired`` that run from their registration, not the file's entry
    (a row carrying only an enabled flag, or a removal, is none)."""
    return [r.name for r in registrations if r.config not in (None, TOMBSTONE)
            and r.name in desired and desired[r.name] is not file_servers.get(r.name)]


class FileEdits:
    """Edits of ``servers.yaml`` that do not apply (module docstring)."""

    def __init__(self) -> None:
        self._seen: Mapping[str, ServerConfig] | None = None  # the file's entries, last merge

    def check(self, file_servers: Mapping[str, ServerConfig],
              registrations: Sequence[Registration], desired: Mapping[str, ServerConfig],
              db: str | None) -> None:
        """Warn of each entry of ``file_servers`` changed since the last check whose
        server runs from its registration in the store ``db`` (in ``desired``, the merge:
        one that no longer validates leaves the file's entry running), or was removed
        there."""
        seen, self._seen = self._seen, dict(file_servers)
        if seen is None:
            return
        where = mask_text(db or "the store")
        overriding = set(runtime_servers(file_servers, registrations, desired))
        for row in registrations:
            name, entry = row.name, file_servers.get(row.name)
            if entry is None or seen.get(name) == entry or (
                    row.config != TOMBSTONE and name not in overriding):
                continue
            shown = shown_name(name)
            if row.config == TOMBSTONE:
                logger.warning(
                    "the config file's entry of server '%s' changed, but it does not run: "
                    "the server was removed at runtime (gateway_remove_server), kept in %s, "
                    "and stays removed until added again; to run it, add it again "
                    "(gateway_add_server, REST POST /api/v1/servers or the dashboard), or "
                    "delete the entry from the config file", shown, where)
            else:
                logger.warning(
                    "the config file's entry of server '%s' changed, but the edit does not "
                    "apply: the server runs its runtime registration in %s, which overrides "
                    "the file's entry of that name ('mcp-gateway servers' shows it); change "
                    "it with gateway_update_server (REST PUT /api/v1/servers/%s, the "
                    "dashboard's Edit settings), or give the file's entry another name",
                    shown, where, shown)


class NamespaceClashes:
    """The clashes said so far (module docstring)."""

    def __init__(self) -> None:
        self._said: set[tuple[str, str, str]] = set()   # (registration, other, namespace)
        self.edits = FileEdits()

    def check(self, file_servers: Mapping[str, ServerConfig],
              registrations: Sequence[Registration], desired: Mapping[str, ServerConfig],
              db: str | None) -> None:
        """Warn of each registration among ``desired`` (the servers to run, merged from
        ``file_servers`` and ``registrations`` of the store ``db``) whose namespace
        another enabled one has, unless said already; and the file's edits that do not
        apply (``FileEdits``)."""
        self.edits.check(file_servers, registrations, desired, db)
        runtime = runtime_servers(file_servers, registrations, desired)
        by_namespace: dict[str, list[ServerConfig]] = {}  # once: not every server per one
        if runtime:
            for each in desired.values():
                if each.enabled:
                    by_namespace.setdefault(each.effective_namespace, []).append(each)
        now: set[tuple[str, str, str]] = set()
        for name in runtime:
            server = desired[name]
            ns = server.effective_namespace if server.enabled else ""
            other = next((o for o in by_namespace.get(ns, ()) if ns and o.name != name), None)
            if other is None:
                continue
            now.add(clash := (name, other.name, ns))
            if clash in self._said:
                continue
            why = (" (accented letters are written without their accents)"
                   if server.namespace is None and ascii_replaced(name) != ns else "")
            logger.warning("server '%s', registered at runtime in %s, now has the namespace "
                           "'%s'%s, which server '%s' has too: components of both named "
                           "alike collide (the later gets a hash suffix); give one of them "
                           "a 'namespace:' (gateway_update_server)", shown_name(name),
                           mask_text(db or "the store"), ns, why, shown_name(other.name))
        self._said = now
