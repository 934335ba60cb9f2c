"""A gateway without ``gateway.auth`` answers this machine only: the request's rule.

``serve`` and ``run_async`` refuse to listen off loopback without ``auth``
(``config/settings.bind_refusal``); ``off_this_machine`` holds every request of the
HTTP app to the same rule (``GatewayApp.__call__``), 403 ``authentication_required``
naming why and the two ways out:

* it came in on a network address (``arrived_locally``): an app a library serves on a
  server of its own;
* a proxy forwarded it for a client that is not on this machine (``forwarded_client``):
  a reverse proxy on the same machine (nginx, Caddy: TLS in front of ``127.0.0.1``)
  connects from loopback, so every request of the network arrived locally, and the
  Host guard's 421 told its user to add ``--allowed-host <name>``, which then served
  anyone the proxy served without a credential.  The proxy says whom it forwards for:
  ``X-Forwarded-For`` (uvicorn puts it into the ASGI ``client`` when the proxy is on
  loopback), ``X-Real-IP``, ``Forwarded: for=``; any address there that is not a
  loopback one (an obfuscated ``unknown`` or ``_name`` too) is a client elsewhere;
* its ``Host`` is let in only by a wildcard ``--allowed-host`` (``*``): a web page on
  a DNS name rebound to 127.0.0.1 is its own origin, so no Origin check refuses it, and
  it used the gateway as its owner would (``only_a_wildcard_takes``; loopback names and
  the hosts named are served as before).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from starlette.types import Scope

from fast_mcp_gateway.config.settings import HOW_TO_ADD_A_TOKEN
from fast_mcp_gateway.http.errors import ApiError

_PROXY_HEADERS = (b"x-forwarded-for", b"x-real-ip", b"forwarded")


def arrived_locally(server: Any) -> bool:
    """Whether a request whose ASGI ``server`` (the address it came in on) is ``server``
    reached a loopback address.  A Unix socket (no port), an unknown address and a
    name rather than an address (an in-process test transport's ``testserver``) count
    as local: only a server listening on a network address reports one."""
    if not isinstance(server, tuple | list) or len(server) != 2 or server[1] is None:
        return True
    return _local_address(str(server[0]))


@functools.lru_cache(maxsize=64)
def _local_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return True  # a name: not a listening socket's address
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual stack
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _forwarded_for(name: bytes, value: bytes) -> list[str]:
    """The clients one proxy header names (``Forwarded``: its ``for=`` parameters)."""
    text = value.decode("latin-1")
    if name != b"forwarded":
        return [part.strip() for part in text.split(",") if part.strip()]
    found = []
    for element in text.split(","):
        for pair in element.split(";"):
            key, _, given = pair.partition("=")
            if key.strip().lower() == "for":
                found.append(given.strip().strip('"'))
    return found


@functools.lru_cache(maxsize=64)
def _loopback_client(text: str) -> bool:
    """Whether a proxy header's client (or a Host's name) is a loopback address, with a
    port or not; remembered as ``_local_address`` is (a wildcard gateway asks it of
    every request's Host: ~10 us of ``ipaddress`` parsing each time)."""
    host = text[1:].partition("]")[0] if text.startswith("[") else (
        text.rpartition(":")[0] if text.count(":") == 1 else text)
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False  # "unknown", an obfuscated "_name": someone, somewhere
    return _local_address(host)


def forwarded_client(scope: Scope) -> str | None:
    """The first client not on this machine that a proxy forwarded the request of
    ``scope`` for (None: no proxy said so)."""
    client = scope.get("client")
    if isinstance(client, tuple | list) and client and not _local_address(str(client[0])):
        return str(client[0])  # uvicorn's reading of X-Forwarded-For
    for name, value in scope["headers"]:
        if name in _PROXY_HEADERS:
            for text in _forwarded_for(name, value):
                if not _loopback_client(text):
                    return text
    return None


@functools.lru_cache(maxsize=64)
def _host_part(value: str) -> str:
    """A Host value or pattern without its port, as the Host guard compares them."""
    host = value.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def wildcard_host(pattern: str) -> bool:
    """Whether ``--allowed-host`` ``pattern`` is wildcards only (``*``, ``*:8765``):
    the Host guard then takes any name, one anyone can point at this machine too."""
    host = _host_part(pattern)
    return bool(host) and set(host) <= set("*?.")


def only_a_wildcard_takes(scope: Scope, allowed_hosts: Sequence[str]) -> tuple[str, str] | None:
    """The request's ``Host`` and the wildcard ``--allowed-host`` that alone lets it
    through the Host guard (None: a loopback name or address, a host named, or no
    wildcard)."""
    wild = next((p for p in allowed_hosts if wildcard_host(p)), None)
    if wild is None:
        return None
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
    name = _host_part(host)
    if name == "localhost" or (name and _loopback_client(name)) or any(
            fnmatchcase(name, _host_part(p)) for p in allowed_hosts if not wildcard_host(p)):
        return None
    return host, wild


def off_this_machine(scope: Scope, allowed_hosts: Sequence[str] = ()) -> ApiError | None:
    """The refusal of an HTTP request to a gateway without ``auth`` that did not come
    from this machine, or came under a name only a wildcard ``allowed_hosts`` entry
    takes (module docstring), or None."""
    if not arrived_locally(scope.get("server")):
        address = str(scope["server"][0])
        return ApiError(403, "authentication_required", (
            f"this gateway has no gateway.auth, so it answers on loopback addresses only, "
            f"and this request came in on {address}: {HOW_TO_ADD_A_TOKEN} (then every "
            "request needs a bearer token), or serve the app on 127.0.0.1 only"),
            {"address": address})
    if (rebound := only_a_wildcard_takes(scope, allowed_hosts)) is not None:
        host, wild = rebound
        return ApiError(403, "authentication_required", (
            f"this gateway has no gateway.auth, so it answers this machine only, and Host "
            f"'{host}' is let in only by --allowed-host '{wild}': a web page on any DNS name "
            "rebound to this machine would be let in alike (DNS rebinding); name the hosts "
            f"it is reached by (--allowed-host {_host_part(host) or 'NAME'}), or "
            f"{HOW_TO_ADD_A_TOKEN} (then every request needs a bearer token)"),
            {"host": host})
    if (client := forwarded_client(scope)) is None:
        return None
    return ApiError(403, "authentication_required", (
        f"this gateway has no gateway.auth, so it answers this machine only, and this "
        f"request came through a proxy for {client}: to serve other machines through a "
        f"proxy, {HOW_TO_ADD_A_TOKEN} (then every request needs a bearer token)"),
        {"client": client})
