"""Profiles (virtual servers): a named subset of the catalog, per request.

``gateway.profiles.<name>`` (``config/curation.py: Profile``) names servers, tool
include/exclude globs on *exposed* names and an exposure mode.  Which profile a request
is for:

* HTTP: the path it came in on, ``/mcp/p/<name>`` -- ``http/app.py`` serves it with the
  one MCP endpoint and records the name in the ASGI scope (``SCOPE_KEY``), read here
  from the request FastMCP hands the handler (so a session opened at one path and used
  at another follows each request's path);
* stdio: ``serve --profile <name>`` for the whole process.

The provider applies it on top of the caller's own access: lists, lookups (a tool
outside the profile is an unknown tool), the search index, and the pipeline's curator
stage, so a call by name is refused on the full path, the express lane and the
search meta-tools alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastmcp.server.dependencies import get_http_request

from fast_mcp_gateway.config.curation import Exposure, Profile
from fast_mcp_gateway.config.schema import GatewayOptions
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.principal import Principal

SCOPE_KEY = "fast_mcp_gateway.profile"
PROFILE_PREFIX = "/p/"


def unknown_profile(name: str, options: GatewayOptions,
                    principal: Principal | None = None, *, running: bool = False) -> str:
    """The error for a profile that is not configured, listing the known ones (those
    ``principal`` may see: ``sees_profile``; None: the operator, every one).  A
    ``running`` gateway's profiles are those it started with (a reload does not change
    them): its answer says so, or a profile just added to the file reads as a typo."""
    known = ", ".join(sorted(p for p, profile in options.profiles.items()
                             if sees_profile(principal, profile))) or (
        "none are configured" if principal is None or not options.profiles
        else "none for this token")
    where = ("servers.yaml as this gateway started with it: a profile added since is "
             "served after a restart" if running else "servers.yaml")
    return f"unknown profile '{name}'; known profiles: {known} (gateway.profiles in {where})"


def sees_profile(principal: Principal | None, profile: Profile) -> bool:
    """Whether ``principal`` is told of ``profile`` (None: the operator): a caller with
    a ``servers`` list, of a profile showing one of them (any without ``servers``);
    one it may not see is unknown to it, as a server outside its list is."""
    if principal is None or principal.servers is None or profile.servers is None:
        return True
    return not principal.servers.isdisjoint(profile.servers)


def check_profile(name: str | None, options: GatewayOptions) -> None:
    """Raise ``ConfigError`` unless ``name`` is None or a configured profile."""
    if name is not None and name not in options.profiles:
        raise ConfigError.single("--profile", None, None, unknown_profile(name, options))


def profile_servers(name: str | None, options: GatewayOptions) -> frozenset[str] | None:
    """The servers a process serving profile ``name`` over stdio runs (None: all of
    them -- no profile, or one that does not limit servers).  Over HTTP every profile
    has its own endpoint, so every server runs whatever ``--profile`` says."""
    profile = options.profiles.get(name) if name is not None else None
    return frozenset(profile.servers) if profile is not None and profile.servers is not None \
        else None


def request_profile() -> str | None:
    """The profile the current HTTP request came in for (None: not an HTTP request, or
    the plain endpoint)."""
    try:
        request = get_http_request()
    except RuntimeError:
        return None
    name = request.scope.get(SCOPE_KEY)
    return name if isinstance(name, str) else None


_NOTHING = Profile(servers=())


@dataclass(frozen=True, slots=True)
class ActiveProfile:
    """A profile in force for one request."""

    name: str
    profile: Profile

    @classmethod
    def of(cls, name: str, options: GatewayOptions) -> ActiveProfile:
        # A profile removed by a reload shows nothing rather than everything.
        return cls(name, options.profiles.get(name, _NOTHING))

    def servers(self, caller: frozenset[str] | None) -> frozenset[str] | None:
        """``caller``'s servers narrowed to the profile's (None: no limit)."""
        mine = self.profile.servers
        if mine is None:
            return caller
        return frozenset(mine) if caller is None else caller & frozenset(mine)

    def shows_tool(self, exposed: str, server: str) -> bool:
        return self.profile.shows_tool(exposed, server)

    def shows_server(self, server: str) -> bool:
        return self.profile.servers is None or server in self.profile.servers

    @property
    def exposure(self) -> Exposure | None:
        return self.profile.exposure
