"""What a host is told when it names a tool, prompt or resource the gateway does not expose.

FastMCP's own answers were bare ("Unknown tool: 'add'", "Resource not found:
'bin://blob'"): a host that used an upstream's own name, or a URI without its server's
namespace, could not tell what to change.  ``unknown_name`` words the answer once for
every path that refuses a name (``tools/call``, ``resources/read`` and ``prompts/get`` on
both protocol eras, ``resources/subscribe``, ``completion/complete``, a profile's
refusal): the first clause as before, then the exposed name the host probably meant
(the same original name, or the URI with a namespace put in, on a server the caller may
use); for a name that carries a server's namespace, that this server has no such tool
or prompt and what it has; for one under a namespace nothing has (a server renamed), the
same name under its server's; else how names are formed here, the servers and the list
that shows them.

A name bound to a server's component that the server does not offer now (starting,
disabled, failed, or dropped from its list: ``routing/bindings.py``) is answered by
``unoffered`` instead: whose it is and why it is missing, never another server's.

Only servers the caller may use are named, so a restricted caller learns nothing of the
others (their names stay as unknown as before).  Pure: the provider passes the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Literal

from fastmcp.resources.template import match_uri_template

from fast_mcp_gateway.principal import Principal
from fast_mcp_gateway.routing.naming import namespace_uri
from fast_mcp_gateway.routing.view import CatalogView

# The fix is conditional: server-everything (TypeScript SDK) has a task-only tool and
# speaks no 2026-07-28, and the plain advice to set the era made it fail to connect.
TASK_REASON = ("it runs only as a task (execution.taskSupport 'required'), and the gateway's "
               "session to its server uses the handshake era, which has no tasks (the tasks "
               "extension exists at MCP 2026-07-28 only); if the server also speaks "
               "2026-07-28, set `protocol: 2026-07-28` for it to relay its tasks to "
               "2026-07-28 hosts (a server that knows only the initialize handshake, as "
               "TypeScript-SDK 1.x servers do, would then fail to connect: its task-only "
               "tools cannot be relayed)")


Kind = Literal["tool", "prompt", "resource"]
_LISTS: dict[str, str] = {"tool": "tools/list lists them", "prompt": "prompts/list lists them",
          "resource": "resources/list and resources/templates/list list them"}
_MEANT = 3  # suggestions at most
Shown = Callable[[str, str], bool]


def unknown_name(kind: Kind | str, name: str, view: CatalogView,
                 namespaces: Mapping[str, str], separator: str, *, search: bool = False,
                 shown: Shown | None = None, own: Collection[str] = (),
                 states: Mapping[str, str] | None = None,
                 reasons: Mapping[str, str] | None = None) -> str:
    """The answer to a host naming ``name``, a ``kind`` nothing exposes to it.

    ``namespaces``: server -> namespace, of the servers the caller may use only;
    ``search``: tools are found with ``search_tools`` (search exposure), not listed;
    ``shown(exposed, server)``: whether a tool of a usable server is the caller's (a
    profile's tool rules; not one a route rule sends outside its servers), default all,
    and no other is suggested; ``own``: the gateway's own tools the caller
    may call (an admin's ``gateway_*``), the closest of which a tool name may mean;
    ``states``: server -> its state, to say why a server offers nothing now;
    ``reasons``: server -> why, where the state's own words are not enough (``invalid``:
    the error of its entry in the config file; reconnecting or failed: its last error,
    as a call sent to it would be told)."""
    head = f"Unknown {kind}: {name!r}"
    lists = "search_tools finds them" if kind == "tool" and search else _LISTS[kind]
    if kind == "tool" and own and (close := _closest(name, own)):
        return (f"{head}; did you mean {' or '.join(map(repr, close))}? (the gateway's "
                f"own tools; {lists})")
    meant = (_meant_uri(name, view, namespaces) if kind == "resource"
             else _meant_name(kind, name, view, namespaces, shown))
    if meant:
        return f"{head}; did you mean {' or '.join(map(repr, meant))}? ({lists})"
    if not namespaces:
        return f"{head}: this caller may use no server's {kind}s"
    if kind != "resource" and (owned := _of_namespace(kind, name, view, namespaces,
                                                        separator, shown, states,
                                                        reasons)) is not None:
        return f"{head}: {owned}; {lists}"
    if kind != "resource" and (moved := _moved(kind, name, view, namespaces, separator,
                                                 shown)):
        # An old namespace (a server renamed in servers.yaml, a name from another config).
        return (f"{head}; did you mean {' or '.join(map(repr, moved))}? (the same {kind} "
                f"name under its server's namespace; {lists})")
    form = ("URIs here carry their server's namespace, as scheme://<namespace>/<path>"
            if kind == "resource" else
            f"names here carry their server's namespace, as <namespace>{separator}<name>")
    servers = ", ".join(_named(server, ns) for server, ns in sorted(namespaces.items()))
    return f"{head}: {kind} {form} (servers: {servers}); {lists}"


_SHOWN = 20  # a server's names listed at most


def _closest(name: str, names: Collection[str], cutoff: float = 0.8) -> list[str]:
    import difflib  # here, not at the top: only a wrong name needs it

    return difflib.get_close_matches(name, sorted(names), n=_MEANT, cutoff=cutoff)


def _of_namespace(kind: Kind | str, name: str, view: CatalogView,
                  namespaces: Mapping[str, str], separator: str,
                  shown: Shown | None, states: Mapping[str, str] | None = None,
                  reasons: Mapping[str, str] | None = None) -> str | None:
    """For a ``name`` that carries a usable server's namespace (the longest that fits):
    that this server has no such ``kind``, the names closest to it, and its names."""
    fits = [(server, ns) for server, ns in namespaces.items()
            if ns and name.startswith(ns + separator) and len(name) > len(ns + separator)]
    if not fits:
        return None
    server, namespace = max(fits, key=lambda fit: len(fit[1]))
    table = view.tools if kind == "tool" else view.prompts
    names = sorted(exposed for exposed, (origin, _) in table.items() if origin.server == server
                   and _shows(shown, kind, exposed, server))
    missing = name[len(namespace + separator):]
    if not names:
        # A server that is down offers nothing: say why, not only that (issue: a failed
        # or disabled server's tools were "unknown", with no word of its state).
        why = (reasons or {}).get(server) or _WHY.get((states or {}).get(server, ""))
        return (f"server '{server}' has no {kind} {missing!r}, and no {kind}s now"
                + (f": {why}" if why else ""))
    close = _closest(name, names)
    # "...; did you mean 'x'? Its tools: ..." or "...; its tools: ..."
    meant = f"did you mean {' or '.join(map(repr, close))}? Its" if close else "its"
    more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return (f"server '{server}' has no {kind} {missing!r}; {meant} {kind}s: "
            f"{', '.join(names[:_SHOWN])}{more}")


_WHY = {"starting": "it is still starting",
        "reconnecting": "it is reconnecting (gateway_list_servers says why)",
        "signed_out": "it needs sign-in (the gateway_sign_in tool, or mcp-gateway login)",
        "failed": "it failed to start (gateway_list_servers says why)",
        "disabled": "it is disabled (gateway_enable_server turns it back on)",
        "stopped": "it is stopped",
        "invalid": "it is invalid: its entry in the config file does not validate, so it "
                   "was not started (gateway_list_servers shows the error)"}


def without_tools(kind: Kind | str, name: str, principal: Principal) -> str | None:
    """Why a caller without scope ``tools`` may use no server's ``kind``, naming what its
    credential grants (a JWT's scopes claim to fix), or one whose JWT grants no server
    (its servers claim to fix: ``Principal.no_server``); None for another caller."""
    if principal.has("tools"):
        return (None if principal.no_server is None else
                f"Unknown {kind}: {name!r}: this caller may use no server's {kind}s: "
                f"{principal.no_server}")
    return (f"Unknown {kind}: {name!r}: this caller may use no server's {kind}s: that "
            f"needs scope 'tools'; {principal.holds}")


def outside_profile(kind: Kind | str, name: str, server: str, original: str, profile: str,
                    others: list[str], *, stdio: bool) -> str:
    """The answer to a host naming ``name``, server ``server``'s ``original``, which its
    profile ``profile`` leaves out but its access allows (``front/unknown_answers.py``
    says why naming it is safe): where it may use it, ``others`` (profiles it may see
    that show it) or the whole gateway."""
    if stdio:
        here = f"this gateway serves profile '{profile}' (serve --profile {profile})"
        there = ("; ".join(f"serve --profile {p}" for p in others[:_MEANT])
                 + (" or " if others else "") + "serve without --profile has it")
    else:
        here = f"this endpoint serves profile '{profile}'"
        there = (", ".join(f"profile '{p}' (an endpoint ending /p/{p})" for p in others[:_MEANT])
                 + (" or " if others else "")
                 + f"the gateway's endpoint without /p/{profile} has it: connect there")
    return (f"Unknown {kind}: {name!r}: {kind} '{original}' of server '{server}' is not in "
            f"this profile: {here}, which leaves it out; {there}")


def unoffered(kind: Kind | str, name: str, server: str, original: str, state: str,
              reason: str | None = None) -> str:
    """The answer to a host naming ``name``, bound to ``server``'s ``original``
    (``routing/bindings.py``), while that server does not offer it (``state``: the
    server's; ``reason``: why it is down, its last error, as a call sent to it is told,
    not only "gateway_list_servers says why").  The name is never another server's, so
    the host is told to wait."""
    why = f"it {reason}" if reason else _WHY.get(state, f"its {kind} list lacks '{original}'")
    resource = kind == "resource"
    lists = "resources/list shows" if resource else _LISTS[kind].split(" list")[0] + " shows"
    return (f"{kind.capitalize()} {name!r} belongs to server '{server}' (its {kind} "
            f"'{original}'), which is not offering it now: {why}.  The "
            f"{'URI' if resource else 'name'} stays bound to that {kind}, never to another "
            f"server's: {'read' if resource else 'call'} it again once '{server}' offers "
            f"it ({lists} it then)")


def _named(server: str, namespace: str) -> str:
    if namespace == server:
        return server
    return f"{server} as '{namespace}'" if namespace else f"{server} (no namespace)"


def _meant_name(kind: Kind | str, name: str, view: CatalogView, namespaces: Mapping[str, str],
                shown: Shown | None = None) -> list[str]:
    """Exposed names of a component whose own name on a usable server is ``name`` (of a
    tool, one ``shown`` to the caller)."""
    table = view.tools if kind == "tool" else view.prompts
    return [exposed for exposed, (origin, _) in table.items()
            if origin.original == name and origin.server in namespaces
            and _shows(shown, kind, exposed, origin.server)][:_MEANT]


def _shows(shown: Shown | None, kind: Kind | str, exposed: str, server: str) -> bool:
    return shown is None or kind != "tool" or shown(exposed, server)


def _moved(kind: Kind | str, name: str, view: CatalogView, namespaces: Mapping[str, str],
           separator: str, shown: Shown | None = None) -> list[str]:
    """Exposed names of a usable server's component whose own name is what follows a
    prefix of ``name`` ending in ``separator`` (``clock_now`` -> ``timer_now``)."""
    if not separator:
        return []
    rests = {name[at + len(separator):] for at in range(len(name))
             if name.startswith(separator, at)}
    table = view.tools if kind == "tool" else view.prompts
    return [exposed for exposed, (origin, _) in table.items()
            if origin.original in rests and origin.server in namespaces
            and _shows(shown, kind, exposed, origin.server)][:_MEANT]


def _meant_uri(uri: str, view: CatalogView, namespaces: Mapping[str, str]) -> list[str]:
    """``uri`` with a usable server's namespace put in, where that names a resource or
    matches a template of that server."""
    meant = [exposed for exposed in view.resources_at(uri)
             if view.resources[exposed][0].server in namespaces]
    for server, namespace in namespaces.items():
        if len(meant) >= _MEANT:
            break
        candidate = namespace_uri(uri, namespace)
        if candidate not in meant and any(
                origin.server == server and match_uri_template(candidate, exposed) is not None
                for exposed, (origin, _) in view.templates.items()):
            meant.append(candidate)
    return meant[:_MEANT]

