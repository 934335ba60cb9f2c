"""What a verified JWT's scopes and servers claims grant, or why they grant nothing.

A claim holding scopes or servers is a space-separated string (``"tools admin"``, as
OAuth's ``scope``) or a list of strings (``["tools", "admin"]``, as most identity
providers' group or role claims).  Anything else is refused (``claim_values``): a JSON
object had its keys taken as the values, so ``{"admin": false}`` granted ``admin``, and
a number or a list holding an object was read through ``str``.

``gateway.auth.jwt.servers_claim``, when set, fails closed (``servers``): a JWT without
the claim may use no server, as one whose claim names none.  Identity providers leave
out a claim whose list would be empty (a group filter matching none): read as "every
server", a user granted no server got all of them.  ``"*"`` (alone, or in the list)
grants every server, to an admin as to anyone.
"""

from __future__ import annotations

from typing import Any

EVERY_SERVER = "*"

def claim_values(claims: dict[str, Any], claim: str) -> list[str] | None:
    """The strings ``claim`` holds (an absent or null claim: none), or None when it is
    of another type (the caller refuses the token)."""
    value = claims.get(claim)
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v for v in value if v]
    return None


def type_refusal(claim: str, setting: str) -> tuple[str, str]:
    """The holder's and the operator's words for a JWT whose ``claim`` (the one
    ``gateway.auth.jwt.<setting>`` names) is of another type: naming the type it must
    have, never the value."""
    rule = ("a space-separated string (\"tools admin\") or a list of strings "
            "([\"tools\", \"admin\"])" if setting == "scopes_claim" else
            "a space-separated string or a list of strings (server names, or \"*\" for "
            "every server)")
    caller = (f"its '{claim}' claim (gateway.auth.jwt.{setting}) is not {rule}: a JSON "
              "object, a number or a list holding anything but strings grants nothing; "
              "have the identity provider issue it as one")
    log = (f"refused a JWT whose '{claim}' claim (gateway.auth.jwt.{setting}) is neither a "
           "string nor a list of strings; have the identity provider issue it as "
           f"{rule}, or set gateway.auth.jwt.{setting} to a claim that is")
    return caller, log


def servers(claims: dict[str, Any], claim: str | None) -> list[str] | None:
    """The servers a JWT's ``claims`` grant under ``servers_claim`` = ``claim`` (None:
    every server; a missing claim: none).  Call ``claim_values`` first: this assumes
    the claim's type is right."""
    if claim is None:
        return None
    values = claim_values(claims, claim) or []
    return None if EVERY_SERVER in values else values


def no_server(subject: str, claim: str) -> str:
    """Why a JWT of ``subject`` may use no server, for every refusal of one (a tool
    call, a REST read of a server, the dashboard)."""
    return (f"the JWT of '{subject}' grants no server: its '{claim}' claim "
            "(gateway.auth.jwt.servers_claim) is missing or names none; have the identity "
            f"provider list the servers this user may use in it, or \"{EVERY_SERVER}\" for "
            "every server")
