"""Exposed names for upstream components: pure, deterministic, reversible by table.

Tool and prompt names become ``<namespace><sep><name>``, then

1. characters outside ``[A-Za-z0-9_-]`` become ``_`` (hosts reject them), a letter with
   an accent the letter without it (``grüße`` -> ``grusse``: ``config.names.host_safe``),
2. a name longer than ``max_length`` is cut and gains ``_<8 hex>`` of a hash of
   (server, original name), so it stays unique and stable across restarts; the cut
   keeps the namespace and as much of the component's own name as fits, but the
   namespace gives way to the name down to half the room (``shortened``): a long
   server name left ``<its first 55 characters>_<hash>`` for each of its tools, names
   that told a host (and its model) nothing of which tool they were,
3. a name already taken by an earlier server (config order), or bound to another
   server's component (``bound``: a name, once given, stays its component's), gains
   the same kind of hash suffix.  Nothing is dropped; every rename is reported with
   its reason.

Resource URIs and URI templates are namespaced as ``scheme://<ns>/rest``; a URI
without ``://`` (``urn:x``, ``mailto:y``) becomes ``scheme:<ns>/rest``.  Template
variables are left intact, so a host can expand the exposed template.

Routing never splits strings: the ``NameTable`` built here maps every exposed name
back to (server, original name).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from fast_mcp_gateway.config.names import ascii_replaced, host_safe, logged_name

HASH_LEN = 8


@dataclass(frozen=True)
class Origin:
    """Where an exposed component really lives."""

    server: str
    original: str


@dataclass(frozen=True)
class Rename:
    """An exposed name that differs from the plain ``namespace + sep + name``.

    ``rival``: the other server ``reason`` names (a collision with its component), and
    ``private``: the reason without it, for a caller that may not use that server."""

    server: str
    original: str
    exposed: str
    reason: str
    rival: str | None = None
    private: str = ""

    def reason_for(self, may_use: Callable[[str], bool]) -> str:
        """``reason`` as told to a caller that may use the servers ``may_use`` admits."""
        return self.reason if self.rival is None or may_use(self.rival) else self.private


@dataclass
class NameTable:
    """Exposed name -> origin, for one kind of component (tools, prompts or URIs)."""

    by_exposed: dict[str, Origin] = field(default_factory=dict)
    renames: list[Rename] = field(default_factory=list)

    def exposed_for(self, server: str) -> dict[str, str]:
        """original -> exposed, for one server."""
        return {o.original: e for e, o in self.by_exposed.items() if o.server == server}


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:HASH_LEN]


def _with_suffix(name: str, suffix: str, max_length: int) -> str:
    return f"{name[: max_length - len(suffix) - 1]}_{suffix}"


def shortened(server: str, namespace: str, original: str, separator: str, safe: str,
              max_length: int) -> str:
    """``safe`` (the host-safe natural name, longer than ``max_length``) cut to fit
    with its hash suffix: the namespace, then the component's own name, the namespace
    cut first while the name would get less than half the room."""
    suffix, room = _digest(server, original), max_length - HASH_LEN - 1
    head = host_safe(f"{namespace}{separator}") if namespace else ""
    if not head or not safe.startswith(head) or len(head) <= room // 2:
        return _with_suffix(safe, suffix, max_length)
    own = safe[len(head):]
    keep = min(len(head), max(room - len(own), room // 2))
    if keep == len(head):
        return _with_suffix(safe, suffix, max_length)
    cut = host_safe(separator) or "_"
    kept_ns = head[: max(1, keep - len(cut))]
    return f"{kept_ns}{cut}{own[: room - len(kept_ns) - len(cut)]}_{suffix}"


RESERVED = "(gateway)"


def natural_name(namespace: str, original: str, separator: str = "_") -> str:
    """The exposed name ``original`` gets when nothing collides (host-safe characters)."""
    natural = f"{namespace}{separator}{original}" if namespace else original
    return host_safe(natural) or "_"


def preferred_name(server: str, namespace: str, original: str, separator: str = "_",
                   max_length: int = 64) -> str:
    """The first name ``allocate_names`` tries for an entry: its natural name, shortened
    (with a hash of server and original) past ``max_length``."""
    exposed = natural_name(namespace, original, separator)
    if len(exposed) > max_length:
        return shortened(server, namespace, original, separator, exposed, max_length)
    return exposed


def allocate_names(
    entries: Iterable[tuple[str, str, str]],
    *,
    separator: str = "_",
    max_length: int = 64,
    reserved: Iterable[str] = (),
    bound: Mapping[str, Origin] | None = None,
) -> NameTable:
    """Give each ``(server, namespace, original)`` a unique host-safe exposed name.

    ``entries`` must come in a deterministic order (config order, then the upstream's
    listing order); earlier entries keep their natural name on a collision.
    ``reserved`` names (the gateway's own tools) are never given to an upstream.
    ``bound`` names (exposed -> origin: ``routing/bindings.py``) keep their origin, which
    takes no other name, whether or not it is among ``entries`` now; the table holds
    them all (an absent origin's name is no other entry's).
    """
    table = NameTable()
    for name in reserved:
        table.by_exposed[name] = Origin(RESERVED, name)
    held = {origin: name for name, origin in (bound or {}).items()
            if name not in table.by_exposed}
    table.by_exposed.update((name, origin) for origin, name in held.items())
    for server, namespace, original in entries:
        natural = f"{namespace}{separator}{original}" if namespace else original
        exposed = safe = host_safe(natural) or "_"
        reasons: list[str] = []
        rival: Origin | None = None
        if exposed != natural:
            reasons.append("characters outside [A-Za-z0-9_-] replaced" if exposed.count("_")
                           > natural.count("_") else "accented letters written without "
                           "their accents")
        if len(exposed) > max_length:
            exposed = shortened(server, namespace, original, separator, exposed, max_length)
            reasons.append(f"longer than {max_length} characters, shortened")
        kept = held.get(Origin(server, original))
        if kept is not None and kept != exposed:
            rival = table.by_exposed.get(exposed)
            why = _kept(server, namespace, original, separator, safe, exposed, kept,
                        max_length)
            # What made the name of now says nothing of the kept one, but a collision.
            reasons = [*(reasons if why == _COLLIDED else []), why,
                       *([_collision(rival)] if rival is not None else [])]
            exposed = kept
        elif kept is None and exposed in table.by_exposed:
            rival = table.by_exposed[exposed]
            reasons.append(_collision(rival))
            exposed = _with_suffix(exposed, _digest(server, original), max_length)
            salt = 0
            while exposed in table.by_exposed:  # a hash collision: astronomically rare
                salt += 1
                exposed = _with_suffix(exposed, _digest(server, original, str(salt)), max_length)
        table.by_exposed[exposed] = Origin(server, original)
        if reasons:
            table.renames.append(_rename(server, original, exposed, reasons, rival))
    return table


_COLLIDED = "keeps the name it was given when it collided"


def legacy_bases(server: str, namespace: str, original: str, separator: str,
                 uris: bool = False) -> set[str]:
    """The names (URIs) with nothing colliding that the rule before transliteration
    gave (``config.names.ascii_replaced``): of ``namespace`` as configured, or of the
    server's name it was made of.  A binding made then is no other rule's change."""
    raws = {namespace, *([server] if host_safe(server) == namespace else [])}
    if uris:
        return {namespace_uri(original, ascii_replaced(raw)) for raw in raws}
    return {ascii_replaced(f"{raw}{separator}{original}" if raw else original) or "_"
            for raw in raws}


def _kept(server: str, namespace: str, original: str, separator: str, safe: str,
          exposed: str, kept: str, max_length: int) -> str:
    """Why a bound name ``kept`` stays, though the rules of now make ``exposed``."""
    if kept in legacy_bases(server, namespace, original, separator):
        return ("keeps the name it was given before accented letters were transliterated: "
                "each character outside [A-Za-z0-9_-] became '_'; by the rules of now it "
                f"would be '{exposed}'")
    suffix = _digest(server, original)
    if len(safe) > max_length and kept == _with_suffix(safe, suffix, max_length):
        return ("keeps the name it was given when a name was shortened to its head, "
                "namespace first; by the rules of now, which keep more of the tool's own "
                f"name, it would be '{exposed}'")
    if len(kept) > max_length and kept == _with_suffix(safe, suffix, len(kept)):
        return (f"keeps the name it was given when names were shortened past {len(kept)} "
                f"characters; max_name_length is {max_length} now")
    room = max_length - HASH_LEN - 1
    if kept.startswith(safe[:room]) or kept.startswith(exposed[:room]):
        return _COLLIDED
    return f"keeps the name it was first given; by the rules of now it would be '{exposed}'"


def _collision(other: Origin) -> str:
    owner = "the gateway" if other.server == RESERVED else f"server '{other.server}'"
    return f"collides with '{logged_name(other.original)}' of {owner}"


_PRIVATE = "collides with a name of another server"


def _rename(server: str, original: str, exposed: str, reasons: list[str],
            rival: Origin | None) -> Rename:
    if rival is None or rival.server == RESERVED:
        return Rename(server, original, exposed, "; ".join(reasons))
    private = [_PRIVATE if r == _collision(rival) else r for r in reasons]
    return Rename(server, original, exposed, "; ".join(reasons), rival.server,
                  "; ".join(private))


def namespace_uri(uri: str, namespace: str) -> str:
    """Put ``namespace`` into a URI or URI template, reversibly (via the table)."""
    if not namespace:
        return uri
    scheme, sep, rest = uri.partition("://")
    if sep:
        return f"{scheme}://{namespace}/{rest}"
    scheme, sep, rest = uri.partition(":")
    if sep and scheme:
        return f"{scheme}:{namespace}/{rest}"
    return f"{namespace}:{uri}"


def allocate_uris(entries: Iterable[tuple[str, str, str]], *,
                  bound: Mapping[str, Origin] | None = None) -> NameTable:
    """Like ``allocate_names`` for resource URIs / templates of ``(server, ns, uri)``.

    A URI taken by an earlier server (possible only with ``namespace: ""``) is
    namespaced with the later server's own name instead.  ``bound`` URIs (exposed ->
    origin: ``routing/bindings.py``) keep their origin, as ``allocate_names``' names do.
    """
    table = NameTable()
    held = {origin: uri for uri, origin in (bound or {}).items()}
    table.by_exposed.update((uri, origin) for origin, uri in held.items())
    for server, namespace, original in entries:
        exposed = namespace_uri(original, namespace)
        kept = held.get(Origin(server, original))
        rival: Origin | None = None
        if kept is not None:
            if kept != exposed:
                rival = table.by_exposed.get(exposed)
                why = ("keeps the URI it was given before accented letters were "
                       "transliterated: each character outside [A-Za-z0-9_-] became '_'; by "
                       f"the rules of now it would be '{exposed}'"
                       if kept in legacy_bases(server, namespace, original, "", uris=True)
                       else "keeps the URI it was given when it collided")
                table.renames.append(_rename(
                    server, original, kept,
                    [why, *([_collision(rival)] if rival is not None else [])], rival))
            exposed = kept
        elif exposed in table.by_exposed:
            rival = table.by_exposed[exposed]
            fallback = host_safe(server)
            exposed = namespace_uri(original, fallback if fallback != namespace else
                                    f"{fallback}-{_digest(server, original)}")
            salt = 0
            while exposed in table.by_exposed:  # bound to another server meanwhile
                salt += 1
                salted = _digest(server, original, str(salt))
                exposed = namespace_uri(original, f"{fallback}-{salted}")
            table.renames.append(_rename(server, original, exposed, [_collision(rival)], rival))
        table.by_exposed[exposed] = Origin(server, original)
    return table
