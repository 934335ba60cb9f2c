"""NameBook: every exposed tool and prompt name and resource URI stays bound to its component.

Names are allocated over the catalogs the gateway knows now (``naming.py``); that alone
let a name move: servers 'a_b' (tool 'c') and 'a' (tool 'b_c') both make 'a_b_c', and
while 'a_b' was slow to start after a restart, or had dropped 'c' for a while, 'a_b_c'
went to a's 'b_c' -- a host calling 'a_b_c' as listed ran another server's tool.

The book remembers each name given (kind, exposed) -> (server, original, base) and the
catalog build allocates with it (``allocate``): a bound component keeps its name, a
bound name is nobody else's, whether its server is ready, starting, failed, disabled or
lacks the component now (a call of it is refused naming the server: ``front/unknown``).

Resource URIs and URI templates are bound the same way (kinds ``resource`` and
``template``; ``naming.allocate_uris``): they collide only between servers with
``namespace: ""`` (any other namespace is put into the URI), where a later server's
URI is namespaced with its own name.  Without the binding, a URI read as listed went
to the other server's resource while its own server was slow to start.

Names are bound once hosts can see them: a gateway's start-up gate defers binding
(``deferred``) until it opens (every first connect made, or the start-up wait over),
so servers that come up together are named in config order, as before; from then on
the first component to get a name keeps it.

A binding is released when its server is removed (a reload that drops it,
``gateway_remove_server``, a shared registration removed, or, found at start, the
config file and the registrations lacking it: ``ControlPlane.attach``), not when the
server is down, disabled, or restarted with a new configuration.  A server listing its
components keeps at most ``UNOFFERED_KEPT`` bindings (per kind) of ones it does not
offer now (a server inventing names in a loop would grow the table a row a name):
past that, the least recently offered are released (``_trim``), each only if no
component listed now asks for its name first and the gateway does not use it, so a
release changes no name given now; a name released is unbound: should a colliding
component ask for it later, it is that one's.  A server listing none of a kind
(starting, failed, or just none) releases none of it.  A binding whose ``base`` (the
name with nothing colliding) no longer matches its server's namespace or the separator
is replaced at the next build; not one bound before transliteration (``base`` in
``naming.legacy_bases``: hosts know it by its old spelling).  Bindings of servers this
gateway does not run (another profile, another gateway's registrations) are kept as
they are.

With a store, ``load`` reads the bindings at start (before the upstreams' first lists)
and ``keep`` writes new ones (insert-if-absent: on a shared PostgreSQL the first
gateway to bind a name wins) and releases; the store answers a claim with the
bindings that hold its names and components now: a name another gateway bound first is
adopted and the catalog rebuilt.  A gateway learns another's claims only when its own
meet them (a name it never gave it does not need), but their releases and forgets as
they are made: each is a change in the shared feed, and ``sync`` (the control plane's,
on such a change) claims again what this gateway still serves -- the store must hold
a name its hosts see before any gateway gives it away -- and drops the rest.  Without
one, bindings last for the process; so does a binding whose name or original is longer
than ``STORED_BYTES`` (a resource URI, an upstream's own tool name: PostgreSQL indexes
at most ~2.7 kB a row, and one such claim failed its whole round, retried for ever).
"""

from __future__ import annotations

import logging
import time
from collections.abc import (
    Callable,
    Collection,
    ItemsView,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    ValuesView,
)

import anyio
import anyio.abc

from fast_mcp_gateway.routing.naming import (
    RESERVED,
    NameTable,
    Origin,
    allocate_names,
    allocate_uris,
    legacy_bases,
    namespace_uri,
    natural_name,
    preferred_name,
)
from fast_mcp_gateway.routing.view import normalize_uri
from fast_mcp_gateway.store import Store, StoreUnavailable
from fast_mcp_gateway.store.names import NameBinding, NameKind
from fast_mcp_gateway.upstream.signals import ChangeSignal

logger = logging.getLogger(__name__)
KINDS: tuple[NameKind, NameKind] = ("tool", "prompt")
URI_KINDS: tuple[NameKind, NameKind] = ("resource", "template")  # resource URIs, templates
# Names a server offering a list keeps bound beyond those it offers now, per kind: past
# this, the least recently offered that nothing asks for now are released (``_trim``).
UNOFFERED_KEPT = 1000
STORED_BYTES = 2000
"""The longest exposed name or original (UTF-8 bytes) of a binding the store keeps."""


def _storable(binding: NameBinding) -> bool:
    return all(len(text.encode("utf-8", "surrogatepass")) <= STORED_BYTES
               for text in (binding.exposed, binding.original))


class Bindings(MutableMapping[tuple[str, str], NameBinding]):
    """(kind, exposed) -> binding, in insertion order, with the resource URIs indexed by
    their normalized form: a URI no binding has as written (a host's read of a URI
    nothing exposes, in any form) is looked up without normalizing every bound one."""

    def __init__(self, rows: Iterable[tuple[tuple[str, str], NameBinding]] = ()) -> None:
        self._rows: dict[tuple[str, str], NameBinding] = {}
        self._normal: dict[str, str] = {}   # a bound resource URI -> its normalized form
        # normalized form -> the bound URIs of that form, in insertion order (a dict as
        # an ordered set: the first is the one a scan of the rows would meet first)
        self._by_normal: dict[str, dict[str, None]] = {}
        self.update(rows)

    def __getitem__(self, key: tuple[str, str]) -> NameBinding:
        return self._rows[key]

    def __setitem__(self, key: tuple[str, str], binding: NameBinding) -> None:
        if key not in self._rows and key[0] == "resource":
            normal = self._normal[key[1]] = normalize_uri(key[1])
            self._by_normal.setdefault(normal, {})[key[1]] = None
        self._rows[key] = binding

    def __delitem__(self, key: tuple[str, str]) -> None:
        del self._rows[key]
        if key[0] == "resource":
            normal = self._normal.pop(key[1])
            same = self._by_normal[normal]
            del same[key[1]]
            if not same:
                del self._by_normal[normal]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def items(self) -> ItemsView[tuple[str, str], NameBinding]:
        return self._rows.items()   # the dict's own (fast) views: every build walks them

    def values(self) -> ValuesView[NameBinding]:
        return self._rows.values()

    def resource(self, normalized: str) -> NameBinding | None:
        """The first bound resource URI (in insertion order) whose normalized form is
        ``normalized``."""
        same = self._by_normal.get(normalized)
        return None if same is None else self._rows[("resource", next(iter(same)))]


class NameBook:
    """The bindings (see the module docstring) and the writes queued for the store."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock   # unix seconds: when a name was bound, or last offered
        self.bound = Bindings()   # (kind, exposed) -> its binding
        self.persistent = False   # a store is attached: ``keep`` writes the queue
        self.deferred = False   # names given now are not bound yet (start-up: module doc)
        self._claims: dict[tuple[str, str], NameBinding] = {}
        self._releases: set[str] = set()
        self._forgets: dict[tuple[str, str, str, str], NameBinding] = {}
        # (kind, exposed) -> when its component was last offered (this process; else ``at``)
        self._offered: dict[tuple[str, str], float] = {}
        self._wake = anyio.Event()
        self._writing = False
        self._in_flight: set[tuple[str, str]] = set()   # claims being written now
        self.written = ChangeSignal()   # notified after each round of writes
        self.reclaimed = 0   # bindings claimed again after another gateway released them

    def load(self, rows: Iterable[NameBinding]) -> bool:
        """Take the store's bindings over the book's (the store's win a conflict; a
        binding the store lacks is kept); returns whether any binding changed."""
        rows = list(rows)
        before = dict(self.bound.items())
        taken = {(r.kind, r.server, r.original) for r in rows}
        for key in [k for k, b in self.bound.items()
                    if (b.kind, b.server, b.original) in taken]:
            del self.bound[key]   # (its row is added again, at the end, as the others)
        self.bound.update(((r.kind, r.exposed), r) for r in rows)
        return dict(self.bound.items()) != before

    def adopt(self, rows: Iterable[NameBinding], *, late: bool = False) -> bool:
        """Attach to a store: ``load`` its bindings, and write to it from now on.
        ``late``: the store opened after the upstreams were named (the gateway started
        without it), and the names given meanwhile are claimed now.  Returns whether any
        binding changed."""
        rows = list(rows)
        changed = self.load(rows)
        self.persistent = True
        if late:
            stored = {(r.kind, r.exposed) for r in rows}
            for key, b in self.bound.items():
                if key not in stored and _storable(b):
                    self._claims[key] = b
            if self._claims:
                self._wake.set()
        return changed

    def binding(self, kind: str, exposed: str) -> NameBinding | None:
        """The component ``exposed`` belongs to, if it was ever given (a resource URI
        in any form that normalizes alike: hosts read the form the list shows)."""
        found = self.bound.get((kind, exposed))
        if found is None and kind == "resource":
            found = self.bound.resource(normalize_uri(exposed))
        return found

    def allocate(self, kind: NameKind, entries: Iterable[tuple[str, str, str]], *,
                 namespaces: Mapping[str, str], separator: str, max_length: int,
                 reserved: Iterable[str] = ()) -> NameTable:
        """``allocate_names`` (``allocate_uris`` for ``URI_KINDS``) over the bindings of
        ``kind``; binds (and queues) the names it gave anew.  ``namespaces``: every server
        this gateway runs (a binding whose base its server's namespace no longer makes is
        dropped, and replaced)."""
        reserved, entries = frozenset(reserved), list(entries)
        uris = kind in URI_KINDS

        def base(namespace: str, original: str) -> str:  # its name with nothing colliding
            return namespace_uri(original, namespace) if uris \
                else natural_name(namespace, original, separator)

        self._trim(kind, entries, reserved, separator, max_length)
        bound: dict[str, Origin] = {}
        shadowed: set[Origin] = set()   # bound to a name the gateway now uses itself
        for (k, exposed), b in list(self.bound.items()):
            if k != kind:
                continue
            ns = namespaces.get(b.server)
            # A name bound before transliteration keeps its spelling: no namespace of an
            # operator's changed, and hosts know it by it.
            if ns is not None and base(ns, b.original) != b.base and b.base not in \
                    legacy_bases(b.server, ns, b.original, separator, uris):
                del self.bound[(k, exposed)]   # its new name replaces it (claim_names)
            elif exposed in reserved:
                shadowed.add(Origin(b.server, b.original))
            else:
                bound[exposed] = Origin(b.server, b.original)
        table = allocate_uris(entries, bound=bound) if uris else allocate_names(
            entries, separator=separator, max_length=max_length, reserved=reserved, bound=bound)
        now = self.clock()
        for exposed, origin in table.by_exposed.items():
            if self.deferred or origin.server == RESERVED or exposed in bound \
                    or origin in shadowed:
                continue
            made = NameBinding(kind=kind, exposed=exposed, server=origin.server,
                               original=origin.original, at=now,
                               base=base(namespaces.get(origin.server, ""), origin.original))
            self.bound[(kind, exposed)] = made
            if self.persistent and _storable(made):
                self._claims[(kind, exposed)] = made
                self._wake.set()
        return table

    def _trim(self, kind: NameKind, entries: list[tuple[str, str, str]],
              reserved: frozenset[str], separator: str, max_length: int) -> None:
        """Release, of each listing server's bindings of ``kind`` it does not offer now,
        all but ``UNOFFERED_KEPT``: least recently offered first, and only names no
        entry asks for first and the gateway does not use (so no name given now
        changes: the module docstring)."""
        now = self.clock()
        offered = {(server, original) for server, _, original in entries}
        listing = {server for server, _ in offered}
        unoffered: dict[str, list[tuple[str, str]]] = {}
        for key, b in self.bound.items():
            if key[0] != kind:
                continue
            if (b.server, b.original) in offered:
                self._offered[key] = now
            elif b.server in listing:
                unoffered.setdefault(b.server, []).append(key)
        if len(self._offered) > 2 * len(self.bound):
            self._offered = {k: t for k, t in self._offered.items() if k in self.bound}
        over = [keys for keys in unoffered.values() if len(keys) > UNOFFERED_KEPT]
        if not over:
            return
        asked = reserved | {namespace_uri(original, namespace) if kind in URI_KINDS
                            else preferred_name(server, namespace, original, separator,
                                                max_length)
                            for server, namespace, original in entries}
        for keys in over:
            free = sorted((k for k in keys if k[1] not in asked),
                          key=lambda k: (self._offered.get(k, self.bound[k].at), k[1]))
            for key in free[:len(keys) - UNOFFERED_KEPT]:
                gone = self.bound.pop(key)
                self._offered.pop(key, None)
                self._claims.pop(key, None)
                if self.persistent:
                    self._forgets[(*key, gone.server, gone.original)] = gone
                    self._wake.set()

    def sync(self, rows: Iterable[NameBinding], running: Collection[str]) -> bool:
        """Follow another gateway's releases and forgets: of the bindings held here that
        ``rows`` (the store's now) lack, claim again those of a server ``running`` here
        (its hosts here may call the name: kept, and the store must hold it before any
        gateway gives it away; a name bound to another component meanwhile is adopted,
        as any claim's) and drop the others (their servers run elsewhere, and were
        removed there).  Returns whether any was dropped."""
        stored = {(r.kind, r.exposed, r.server, r.original) for r in rows}
        again: set[str] = set()
        dropped: set[str] = set()
        for key, b in list(self.bound.items()):
            if (b.kind, b.exposed, b.server, b.original) in stored or key in self._claims \
                    or key in self._in_flight or not _storable(b):
                continue   # (one too long for the store is this process's alone)
            if b.server in running:
                self._claims[key] = b
                self.reclaimed += 1
                again.add(b.server)
            else:
                del self.bound[key]
                self._offered.pop(key, None)
                dropped.add(b.server)
        if again:
            self._wake.set()
            logger.info("another gateway released exposed names of server(s) %s, which this "
                        "one serves: claimed them again", ", ".join(sorted(again)))
        if dropped:
            logger.info("freed the exposed names of server(s) %s: another gateway released "
                        "them, and this one does not run them", ", ".join(sorted(dropped)))
        return bool(dropped)

    def _still_held(self, rows: list[NameBinding]) -> list[NameBinding]:
        """Of a claim's answer, the bindings not released or forgotten while it was on
        its way (the next round writes those; loading them brought them back)."""
        return [r for r in rows if r.server not in self._releases
                and (r.kind, r.exposed, r.server, r.original) not in self._forgets]

    def servers(self) -> set[str]:
        """The servers holding names."""
        return {b.server for b in self.bound.values()}

    def release(self, server: str) -> None:
        """Forget ``server``'s names (it was removed)."""
        for key in [k for k, b in self.bound.items() if b.server == server]:
            del self.bound[key]
            self._claims.pop(key, None)
        if self.persistent:
            self._releases.add(server)
            self._wake.set()

    @property
    def pending(self) -> bool:
        return bool(self._claims or self._releases or self._forgets or self._writing)

    async def flushed(self, within: float) -> bool:
        """Wait until every queued write reached the store (False after ``within`` s)."""
        return await self.written.wait_until(lambda: not self.pending, within)

    async def keep(self, store: Callable[[], Store | None], on_adopted: Callable[[], None],
                   *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                   ) -> None:
        """Write the queued claims and releases to ``store()`` until cancelled; a name
        the store holds for another component is adopted (``on_adopted()``: rebuild)."""
        task_status.started()
        delay = 0.2
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            current = store()
            claims, releases = list(self._claims.values()), sorted(self._releases)
            forgets = list(self._forgets.values())
            self._claims, self._releases, self._forgets = {}, set(), {}
            if current is None:
                continue
            self._writing = True
            self._in_flight = {(c.kind, c.exposed) for c in claims}
            try:
                for server in releases:
                    await current.release_names(server)
                if forgets:   # before the claims: a name forgotten may be claimed anew
                    await current.forget_names(forgets)
                if claims and self.load(self._still_held(await current.claim_names(claims))):
                    on_adopted()
                delay = 0.2
            except Exception as exc:  # noqa: BLE001 - the bindings hold in memory meanwhile
                if not isinstance(exc, StoreUnavailable):  # an outage is said once, apart
                    logger.warning("could not keep the exposed names' bindings in the store "
                                   "(%s); retrying", exc)
                for c in claims:
                    self._claims.setdefault((c.kind, c.exposed), c)
                self._releases.update(releases)
                for f in forgets:
                    self._forgets.setdefault((f.kind, f.exposed, f.server, f.original), f)
                self._wake.set()
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._writing, self._in_flight = False, set()
                self.written.notify()
