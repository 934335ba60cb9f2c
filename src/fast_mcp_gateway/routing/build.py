"""The catalog build: every server's catalog through its rules, names allocated, one new
``CatalogView`` (``build_view``), and what a build tells the operator once
(``BuildLog``: a tool exposed under another name, a curation rule that did nothing).

Run by ``UpstreamManager`` whenever an upstream's catalog or visibility changes.  Names
are allocated over every *enabled* upstream's last known catalog, in config order, so an
exposed name stays the same while its upstream reconnects; only upstreams that are
ready, starting or reconnecting are exposed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

from fast_mcp_gateway.config.names import logged_name
from fast_mcp_gateway.config.schema import GatewayOptions
from fast_mcp_gateway.routing.bindings import KINDS, URI_KINDS, NameBook
from fast_mcp_gateway.routing.curation import Entry, curate
from fast_mcp_gateway.routing.naming import NameTable, Origin, Rename
from fast_mcp_gateway.routing.pinning import PinBook
from fast_mcp_gateway.routing.service import Service
from fast_mcp_gateway.routing.view import CatalogView, index_hidden, normalize_uri
from fast_mcp_gateway.upstream.replica import UpstreamState

logger = logging.getLogger(__name__)

EXPOSED_STATES = (UpstreamState.READY, UpstreamState.STARTING, UpstreamState.RECONNECTING,
                  UpstreamState.SIGNED_OUT)


def build_view(ordered: Sequence[Service], previous: CatalogView, *, names: NameBook,
               pins: PinBook, options: GatewayOptions, reserved: Sequence[str]
               ) -> CatalogView:
    """The next generation of the catalog, over ``ordered`` services (config order)."""
    # A name once given stays its component's (bindings.py): were it given to another
    # server's colliding tool ('a' + 'b_c' vs 'a_b' + 'c') while its own was disabled,
    # held, slow to start or dropped, a host calling it as listed would run that one.
    exposed = {u.name for u in ordered if u.state in EXPOSED_STATES}
    sep, max_len = options.separator, options.max_name_length
    # One place applies every server's rules; everything below sees only the result.
    curated = {u.name: curate(u.config, u.catalog) for u in ordered}
    named = {n: (list(c.tools), list(c.prompts)) for n, c in curated.items()}
    for u in ordered:   # pinning holds what changed, as a rule would hide it
        if u.state is UpstreamState.DISABLED:
            continue
        pins.review(u.name, u.config.pinning or options.pinning, u.catalog, curated[u.name])

    def ns(u: Service) -> str:
        return u.config.effective_namespace

    def entries(kind: str) -> Callable[[Service], list[Entry[Any]]]:
        return lambda u: list(getattr(curated[u.name], kind))

    namespaces = {u.name: ns(u) for u in ordered}
    tool_table, prompt_table = (names.allocate(
        kind, ((u.name, ns(u), e.name) for u in ordered for e in named[u.name][i]),
        namespaces=namespaces, separator=sep, max_length=max_len,
        reserved=reserved if kind == "tool" else ()) for i, kind in enumerate(KINDS))
    resource_table, template_table = (names.allocate(
        kind, ((u.name, ns(u), e.name) for u in ordered for e in entries(listed)(u)),
        namespaces=namespaces, separator=sep, max_length=max_len)
        for kind, listed in zip(URI_KINDS, ("resources", "templates"), strict=True))
    by_name = {u.name: u for u in ordered}
    # (server, name the table was given) -> entry: the table's "original" is the
    # curated name; the view's Origin carries the upstream's own.
    index = {(u.name, kind, e.name): e for u in ordered
             for kind in ("tools", "prompts", "resources", "templates")
             for e in entries(kind)(u)}

    def pick(table: NameTable, kind: str, norm: Callable[[str], str] = str
             ) -> dict[str, tuple[Origin, Any]]:
        out: dict[str, tuple[Origin, Any]] = {}
        for name, origin in table.by_exposed.items():
            entry = index.get((origin.server, kind, origin.original))
            if origin.server in exposed and entry is not None:  # None: held
                out[norm(name)] = (Origin(origin.server, entry.original), entry.item)
        return out

    def upstream_rename(rename: Rename, kind: str) -> Rename:
        entry = index.get((rename.server, kind, rename.original))
        original = entry.original if entry is not None else rename.original
        return dataclasses.replace(rename, original=original)

    view = CatalogView(
        tools=pick(tool_table, "tools"),
        prompts=pick(prompt_table, "prompts"),
        resources=pick(resource_table, "resources", normalize_uri),
        templates=pick(template_table, "templates"),
        renames=[*(upstream_rename(r, "tools") for r in tool_table.renames),
                 *(upstream_rename(r, "prompts") for r in prompt_table.renames),
                 *resource_table.renames, *template_table.renames],
        generation=previous.generation + 1,
        curation=curated,
    )
    index_hidden(view, [(u.name, ns(u), u.catalog) for u in ordered if u.name in exposed],
                 sep)
    overridden = {(server, o) for server, c in curated.items() for o, _ in c.overridden}
    for name, (origin, _) in view.tools.items():
        if (origin.server, origin.original) in overridden:
            view.upstream_annotations[name] = next(
                t.annotations for t in by_name[origin.server].catalog.tools
                if t.name == origin.original)
    return view


class BuildLog:
    """What a catalog build tells the operator, each thing once: a name exposed under
    another (a collision, a length cut), and a curation rule that did nothing
    (``Curated.problems``: a misspelled rename, override, include or exclude target,
    with the closest name the server has) -- the same lines ``mcp-gateway check`` and
    ``gateway_server_detail`` show, which ``serve`` never logged, so an operator editing
    servers.yaml and reloading heard nothing.  A problem is said at WARNING when a
    build of its server's *listed* catalog (the server ready) first shows it, not again
    while it stands, and at INFO when the rule applies again (fixed, or the server now
    has the name); a server not ready keeps what was said (its next list decides).  A
    problem is known by its rule, not its closest name (``_rule_of``): on a server whose
    list changes often that name did, and each change said the rule "applies now" (it
    did not) and warned of it again."""

    def __init__(self) -> None:
        self._problems: dict[str, dict[str, str]] = {}   # server -> rule -> problem said
        self._many = False  # said that the default exposure lists more than the threshold
        self.profile: str | None = None  # ``serve --profile``: what every host lists

    def built(self, previous: CatalogView, view: CatalogView,
              ready: Callable[[str], bool], options: GatewayOptions | None = None) -> None:
        """Log what ``view`` newly shows against ``previous`` (``ready(server)``: its
        catalog is one the server listed, not the empty one of a server never reached)."""
        if options is not None:
            self._listed(view, options)
        said = {(r.server, r.original, r.exposed) for r in previous.renames}
        for rename in view.renames:  # once: a later reason ("keeps the name...") is no news
            if (rename.server, rename.original, rename.exposed) not in said:
                logger.warning("server %s: '%s' exposed as '%s' (%s)", rename.server,
                               logged_name(rename.original), rename.exposed, rename.reason)
        for server in [s for s in self._problems if s not in view.curation]:
            del self._problems[server]   # removed: said again if it comes back so
        for server, curated in view.curation.items():
            if not ready(server):
                continue
            now = {_rule_of(problem): problem for problem in curated.problems}
            before = self._problems.get(server, {})
            for rule, problem in now.items():
                if rule not in before:
                    logger.warning("server %s: a curation rule did nothing: %s (the rule "
                                   "stays in force and applies once the name exists)",
                                   server, problem)
            for rule in sorted(before.keys() - now.keys()):
                logger.info("server %s: the curation rule applies now (it did nothing: %s)",
                            server, before[rule])
            self._problems[server] = now


    def _listed(self, view: CatalogView, options: GatewayOptions) -> None:
        """Say once that every host lists ``view``'s tools, more than ``exposure: auto``
        would list, when nobody chose ``exposure: all`` (it is the default): each host
        carries the whole list in every prompt (~330 tokens a tool on the README's real
        catalog), and nothing said so.  Said again only after the count fell back.
        Under ``serve --profile`` (``profile``) every host lists what it shows, in its
        exposure if it sets one (a profile a reload removed shows nothing)."""
        threshold = options.search.auto_threshold_tools
        tools, chosen = len(view.tools), "exposure" in options.model_fields_set
        if self.profile is not None:
            profile = options.profiles.get(self.profile)
            chosen = chosen or (profile is not None and profile.exposure is not None)
            tools = 0 if profile is None else sum(
                profile.shows_tool(name, origin.server)
                for name, (origin, _) in view.tools.items())
        many = options.exposure == "all" and not chosen and tools > threshold
        if many and not self._many:
            logger.warning(
                "%d tools are listed to every host (gateway.exposure is not set: 'all', "
                "every tool in every host's context); above %d, set gateway.exposure: auto "
                "(search meta-tools above gateway.search.auto_threshold_tools) or search, "
                "or exposure: all to keep listing them all", tools, threshold)
        self._many = many


def _rule_of(problem: str) -> str:
    """``problem`` without the closest name the server's list had (``curation.closest``)."""
    head, sep, _ = problem.rpartition(" (closest: '")
    return head if sep and problem.endswith("')") else problem
