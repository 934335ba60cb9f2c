"""The provider's answer to a name a caller cannot reach (``GatewayProvider.unknown``),
assembled from the catalog, the caller's access and its profile: split out of
``provider.py``; the words are ``unknown.py``'s.

A tool (or prompt) the caller's *profile* leaves out, which the caller could use at
another endpoint, is answered so (``unknown.outside_profile``): "not in this profile
('coding'); profile 'full' has it, as does the gateway's endpoint without /p/coding".
It read "server 'fs' has no tool 'read_media_file'", as if the tool did not exist.
Profiles are curation, not authorization: a caller picks its profile by the path it
connects to (or the ``--profile`` its stdio entry runs), and ``/mcp`` shows it every
tool its token allows, so naming the tool there tells it nothing it could not list.
What *is* authorization keeps the plain "no such tool": a server outside the token's
``servers`` (or a caller without scope ``tools``), a tool a route rule sends to such a
server, and a profile the token may not see (``sees_profile``) is never named.  A
tool the server's own rules hide, a task-only one, or one not offered now is answered
as before (those are not the profile's doing).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Container, Mapping
from typing import Protocol

from fast_mcp_gateway.config.schema import InvalidServer
from fast_mcp_gateway.front.calls import CallPipeline
from fast_mcp_gateway.front.profiles import ActiveProfile, sees_profile
from fast_mcp_gateway.front.unknown import (
    Kind,
    outside_profile,
    unknown_name,
    unoffered,
    without_tools,
)
from fast_mcp_gateway.routing.manager import UpstreamManager


class Catalog(Protocol):
    """What of ``GatewayProvider`` an answer reads (the provider imports this module)."""

    @property
    def manager(self) -> UpstreamManager: ...
    @property
    def pipeline(self) -> CallPipeline: ...
    @property
    def own_names(self) -> Collection[str]: ...
    @property
    def own_shown(self) -> Callable[[str], bool]: ...
    @property
    def invalid(self) -> Callable[[], Mapping[str, InvalidServer]]: ...
    @property
    def profile(self) -> str | None: ...

    def caller_servers(self) -> frozenset[str] | None: ...
    def active_profile(self) -> ActiveProfile | None: ...
    def routed_away(self) -> Callable[[str], bool] | None: ...
    def search_mode(self) -> bool: ...
    def caller_is_admin(self) -> bool: ...
    def task_only_names(self) -> Container[str]: ...


def unknown_answer(provider: Catalog, kind: Kind | str, name: str) -> str:
    """``GatewayProvider.unknown``: the name the caller meant, or how names are formed,
    naming only its listed tools (none: why, ``without_tools``); a tool its profile
    leaves out, where it may use it; then ``pipeline.unread``."""
    servers, services = provider.caller_servers(), provider.manager.services
    active = provider.active_profile()
    away = provider.routed_away()   # nor a tool a rule routes where the caller may not go
    namespaces = {name: service.config.effective_namespace
                  for name, service in services.items() if _visible(name, servers)}
    bound = provider.manager.names.binding(kind, name)
    if bound is not None and bound.server in namespaces \
            and not provider.manager.view.offers(kind, name):
        owner = provider.manager.services[bound.server]
        down = owner.state.value in ("reconnecting", "failed") and owner.replicas
        return unoffered(kind, name, bound.server, bound.original, owner.state.value,
                         owner.replicas[0].unavailable_reason() if down else None)
    principal = provider.pipeline.resolve_principal()
    if (refused := without_tools(kind, name, principal)) is not None:
        return refused + provider.pipeline.unread()
    if active is not None and (elsewhere := _elsewhere(provider, kind, name, active)):
        return elsewhere + provider.pipeline.unread()
    own = ([n for n in provider.own_names if provider.own_shown(n)]
           if kind == "tool" and provider.own_names and provider.caller_is_admin() else ())
    states = {n: services[n].state.value for n in namespaces}
    why = {n: f"it {services[n].replicas[0].unavailable_reason()}" for n in states
           if states[n] in ("reconnecting", "failed") and services[n].replicas}
    invalid = {n: e for n, e in provider.invalid().items()  # not running: entry invalid
               if n not in services and _visible(n, servers)}
    hidden_tasks = provider.task_only_names()
    return unknown_name(
        kind, name, provider.manager.view,
        {**namespaces, **{n: e.namespace for n, e in invalid.items()}},
        provider.manager.config.options.separator,
        search=kind == "tool" and provider.search_mode(),
        shown=lambda exposed, server: exposed not in hidden_tasks
        and (active is None or active.shows_tool(exposed, server))
        and (away is None or not away(exposed)),
        own=own, states={**states, **dict.fromkeys(invalid, "invalid")},
        reasons={**why, **{n: f"it is invalid, so it was not started: {e.error}"
                           for n, e in invalid.items()}}) + provider.pipeline.unread()


def _visible(server: str, servers: frozenset[str] | None) -> bool:
    return servers is None or server in servers


def _elsewhere(provider: Catalog, kind: Kind | str, name: str,
               active: ActiveProfile) -> str | None:
    """For a tool or prompt exposed as ``name`` that ``active`` alone keeps from the
    caller (its token may use it, no route rule sends it elsewhere): where it is."""
    view = provider.manager.view
    origin = (view.tools[name][0] if kind == "tool" and name in view.tools else
              view.prompts[name][0] if kind == "prompt" and name in view.prompts else None)
    if origin is None:
        return None
    if kind == "tool":
        if name in provider.task_only_names():
            return None
        away = provider.routed_away()
        if away is not None and away(name):
            return None   # authorization: a route rule sends it outside the token's servers

    def shows(profile: ActiveProfile) -> bool:
        return (profile.shows_tool(name, origin.server) if kind == "tool"
                else profile.shows_server(origin.server))

    principal = provider.pipeline.resolve_principal()
    server, original = origin.server, origin.original
    if not principal.may_use(server) or shows(active):
        return None   # authorization (the token's servers), or not the profile's doing
    options = provider.manager.config.options
    others = sorted(p for p, profile in options.profiles.items()
                    if p != active.name and sees_profile(principal, profile)
                    and shows(ActiveProfile(p, profile)))
    return outside_profile(kind, name, server, original, active.name, others,
                           stdio=provider.profile is not None)
