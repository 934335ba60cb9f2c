"""A token a client put in a URL's query string (``in_query``): named in a refusal for
want of a token (``access.no_token``) and kept out of what is sent back (the /ui
redirect, ``errors``).  A module of its own: ``access`` imports ``errors``, which needs
it too (an import of ``access`` there was a cycle)."""

from __future__ import annotations

from urllib.parse import parse_qsl

# Where clients and proxies put a token in a URL (RFC 6750's access_token first).
_QUERY_TOKEN_NAMES = frozenset({"access_token", "token", "bearer", "auth", "authorization",
                                "api_key", "apikey", "key", "jwt", "id_token"})


def in_query(query: str | bytes) -> str:
    """What to add to a refusal for want of a token when ``query`` seems to carry one: a
    parameter of a name clients use for tokens, or a value of the form of the gateway's
    tokens or of a JWT.  A token in a URL is never read (URLs are kept in proxies' logs
    and browsers' history: RFC 6750 advises against it); the value is never repeated,
    the parameter named only when it is one of those names (anything else a caller
    wrote stays out of the answer)."""
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    if not text:
        return ""
    for name, value in parse_qsl(text, keep_blank_values=True):
        named = name.lower() in _QUERY_TOKEN_NAMES
        if named or value.startswith("mgw_") or (value.startswith("eyJ")
                                                 and value.count(".") == 2):
            where = f"'{name.lower()}='" if named else "a parameter"
            return (f"; the URL's query string holds a token ({where}), which this gateway "
                    "does not read: send it in the Authorization header instead (a URL "
                    "ends up in proxies' logs and browsers' history: replace a token "
                    "sent in one)")
    return ""
