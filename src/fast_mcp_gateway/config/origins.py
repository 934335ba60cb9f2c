"""Web origins as ``MCP_GATEWAY_ALLOWED_ORIGINS`` lists them and as browsers send them.

An origin is ``scheme://host[:port]`` (RFC 6454).  Browsers send it in one form: the
scheme and host in lower case, a scheme's default port left out (``http://localhost``,
never ``http://localhost:80``), no path and no trailing slash.  A listed origin written
otherwise (``https://App.example.com:443/``) named the same page, yet the gateway's
check of pages of other sites (``http/fetch_site.py``) compared the text and refused it.
So each entry is brought to that form once, at start-up (``allowed_origin``), and an
entry that is no origin (a path, a query, ``null``, a bad port) is refused there,
saying what to write.  ``*`` wildcards (``https://*.example.com``,
``http://localhost:*``) stay patterns, as the Host/Origin guard reads them.

A host in Unicode (an internationalised domain name, ``https://bücher.example``) is sent
by browsers in its ASCII form (``Origin: https://xn--bcher-kva.example``, IDNA): listed
as written, it never matched, and the page was refused (403) with the entry looking
right.  So it is brought to that form too, label by label with the standard library's
``idna`` codec (IDNA 2003).  Browsers follow UTS #46, which differs from it only on four
"deviation" characters (``ß``, ``ς``, zero-width joiner and non-joiner: IDNA 2003 maps
``ß`` to ``ss``, a browser encodes it), so a label holding one, or a ``*`` with Unicode,
is refused, saying to write the ``xn--`` form the browser sends (``location.origin`` in
its console shows it); so is a label the codec encodes otherwise than today's case
folding would (``_idna``: Cherokee).  ``MCP_GATEWAY_ALLOWED_HOSTS`` gets the same
(``allowed_host``): browsers send ``Host`` in that form too.  So does
``MCP_GATEWAY_PUBLIC_URL`` (``public_url``): the protected-resource metadata, its link
in ``WWW-Authenticate`` and the discovery answers name it, and FastMCP's URL type wrote
the host in ASCII in some of them and the gateway in Unicode in others, one resource
under two names (a non-ASCII path is percent-encoded, as browsers and that type do).

Standard library only: settings import it.
"""

from __future__ import annotations

import re
import stringprep
import unicodedata
from urllib.parse import quote, unquote

DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}

_ORIGIN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://"
                     r"(?P<host>\[[^\]/?#]*\]|[^:/?#\[\]]*)"
                     r"(?::(?P<port>[^/?#]*))?(?P<rest>.*)", re.DOTALL)
_EXAMPLE = "e.g. https://app.example.com or http://localhost:3000"
_DOTS = re.compile("[.\u3002\uff0e\uff61]")  # the label separators IDNA reads as '.'
_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")  # UTS 46's, see the docstring
_PATH_KEPT = "/%:@!$&'()*+,;=~?#[]"  # a path's, query's and fragment's own characters
_NO_HOST = re.compile(r"[\x00-\x20.#%/:<>?@\[\\\]^|\x7f]")  # the URL standard's forbidden


def allowed_origin(text: str) -> str:
    """``text``, an entry of ``MCP_GATEWAY_ALLOWED_ORIGINS``, in the form browsers send
    (lower case, no default port, no trailing slash); ``ValueError`` naming what is
    wrong and what to write when it is no origin."""
    value = text.strip()
    if value == "*":
        return value
    if value.lower() == "null":
        raise ValueError("'null' is the Origin of sandboxed frames and local files, which "
                         "any page can send: it cannot be allowed; list the origins of the "
                         f"pages that call the gateway ({_EXAMPLE})")
    match = _ORIGIN.fullmatch(value)
    if match is None or not match["host"]:
        raise ValueError(f"'{text}' is not an origin: write scheme://host[:port], {_EXAMPLE}")
    scheme, host = match["scheme"].lower(), match["host"].lower()
    if "@" in host:
        raise ValueError(f"'{text}' has a user name: an origin is scheme://host[:port] "
                         f"only, {_EXAMPLE}")
    if not host.isascii():
        host = _ascii_host(text, host)
    port = _port(text, scheme, match["port"] or "")
    written = f"{scheme}://{host}{':' + port if port else ''}"
    if match["rest"] not in ("", "/"):  # one trailing slash is the same origin
        raise ValueError(
            f"'{text}' has a path, query or fragment ('{match['rest']}'): an origin is "
            f"scheme://host[:port] only, as browsers send it in the Origin header; write "
            f"'{written}'")
    return written


def allowed_host(text: str) -> str:
    """``text``, an entry of ``MCP_GATEWAY_ALLOWED_HOSTS`` (``host[:port]``, ``*``
    patterns), with a Unicode host in the ASCII form browsers send in ``Host`` (as
    ``allowed_origin``'s): kept as written it never matched.  An ASCII entry is kept as
    it is (the Host guard compares without case).  A URL (``https://gw.example.com``)
    is refused, naming the host to write: the guard read it as the host ``https``, and
    the gateway answered 421 to the host listed."""
    value = text.strip()
    if "/" in value or "@" in value:
        host = value.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[2]
        raise ValueError(f"'{text}' is not a host: an allowed host is host[:port] as "
                         f"browsers send it in the Host header, e.g. gw.example.com or "
                         f"localhost:8765; write '{host or 'gw.example.com'}'")
    if value.isascii():
        return value
    host, colon, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    return _ascii_host(text, host.lower(), header="Host") + colon + port


def public_url(text: str) -> str:
    """``text``, ``MCP_GATEWAY_PUBLIC_URL`` (an http(s) URL), with a Unicode host in the
    ASCII form browsers and OAuth clients use (as ``allowed_host``'s; refused, naming
    that form, where it cannot be told) and a non-ASCII path percent-encoded; an ASCII
    URL is kept as written.  A ``*`` in its host or port is refused: it is one address,
    and its origin is allowed (``with_public_origin``), where ``http://*`` was a pattern
    letting a page of any site post to the dashboard and the API; so is a path starting
    with ``//`` (or ``/%2F``, ``/\\``), which the dashboard's URLs would begin with: to a
    browser, ``//tools/gw/ui/login`` is on the host ``tools``."""
    scheme, _, rest = text.partition("://")
    authority, slash, path = rest.partition("/")
    if "*" in authority.partition("?")[0].partition("#")[0]:
        raise ValueError(f"'{text}' has a '*' in its host or port: the public URL is the one "
                         "address hosts reach the gateway at (its origin may post to the "
                         "dashboard), no pattern; write it, e.g. https://gw.example.com/tools"
                         "/gw, and list other pages' origins in MCP_GATEWAY_ALLOWED_ORIGINS")
    if unquote(slash + path.partition("?")[0].partition("#")[0]).replace(
            "\\", "/").startswith("//"):
        raise ValueError(f"'{text}' has a path starting with '//': the dashboard's links, "
                         "forms and redirects, under that path, would name another host (a "
                         "browser reads '//tools/gw/ui/login' as the host 'tools'); write one "
                         "'/' after the host, e.g. https://gw.example.com/tools/gw")
    _check_path_text(text, slash + path.partition("?")[0].partition("#")[0])
    if text.isascii():
        return text
    if not authority.isascii():
        host, colon, port = (authority.rpartition(":") if authority.count(":") == 1
                             else (authority, "", ""))
        try:
            authority = _ascii_host(text, host.lower(), header="Host") + colon + port
        except ValueError as exc:
            raise ValueError(f"{exc}{_url_standard_form(text)}") from None
    return f"{scheme}://{authority}{slash}{quote(path, safe=_PATH_KEPT)}"


def _check_path_text(text: str, path: str) -> None:
    """Refuse a public URL path holding an encoded '/' or '\\' (%2F, %5C) or a ';'.  The
    dashboard's links, redirects and login cookie are made from the path decoded (the
    ASGI ``root_path``): %2F became a '/' there, a path the proxy routes elsewhere than
    the one it matched; and the cookie's Path, which must encode a ';' (it would end the
    attribute), then names another path than the browser's URL: it was never sent back,
    so every login led to the login page again."""
    lowered = path.lower()
    for encoded, char in (("%2f", "/"), ("%5c", "\\")):
        if encoded in lowered:
            raise ValueError(
                f"'{text}' has an encoded '{char}' ({encoded.upper()}) in its path: the "
                f"dashboard's links and redirects name the path decoded, with a '{char}', "
                "which the proxy in front does not route here; use a path without it, e.g. "
                "https://gw.example.com/tools/gw")
    if ";" in path:
        raise ValueError(
            f"'{text}' has a ';' in its path: the dashboard's login cookie cannot be given "
            "that path as browsers match it (a ';' ends a cookie attribute), so a login "
            "would never hold; use a path without ';', e.g. https://gw.example.com/tools/gw")


def _url_standard_form(text: str) -> str:
    """The words naming ``text`` as the URL standard (UTS #46, browsers) writes it,
    '' if it has none: pydantic's URL type, which FastMCP's metadata uses, parses so."""
    from pydantic_core import Url  # loaded with pydantic anyway; only for a refusal

    try:
        form = str(Url(text))
    except ValueError:
        return ""
    if form.count("/") == 3 and form.endswith("/") and not text.endswith("/"):
        form = form[:-1]   # the root path it adds
    return f"; by the URL standard, as browsers and OAuth clients write it: '{form}'"


def _ascii_host(text: str, host: str, *, header: str = "Origin") -> str:
    """``host`` (with Unicode) in the ASCII form browsers send (see the module
    docstring); ``ValueError`` saying to write that form where it cannot be told."""
    labels = []
    for label in _DOTS.split(host):
        if label.isascii():
            labels.append(label)
            continue
        deviation = next((c for c in label if c in _DEVIATIONS), None)
        try:
            if deviation is not None or "*" in label:
                raise UnicodeError
            labels.append(_idna(label))
        except UnicodeError:
            why = (f"holds U+{ord(deviation):04X}, which browsers and Python's IDNA encode "
                   "differently" if deviation is not None else
                   f"has the label '{label}', whose IDNA (ASCII) form cannot be told "
                   "here as browsers tell it")
            raise ValueError(
                f"'{text}' {why}: write its host in the ASCII (xn--) form browsers send in "
                f"the {header} header (location.{header.lower()} in the browser's console "
                "on that page shows it)") from None
    return ".".join(labels)


def _idna(label: str) -> str:
    """``label`` (Unicode, no deviation) IDNA-encoded, as browsers do; ``UnicodeError``
    where IDNA 2003 and UTS #46 part.  Python's codec maps with Unicode 3.2's tables but
    today's lower case: Cherokee, given lower case letters in Unicode 8, which case
    folding (and so UTS #46) maps to upper case, came out as another name than the
    browser's (``ᏣᎳᎩ``: ``xn--tz9ata7l``, the browser's ``xn--f9dt7l``), silently never
    matched.  So the codec's answer must agree with today's NFKC case folding, and a
    mapping may not make a dot or a character no host holds (``⒈`` is ``1.``)."""
    encoded = label.encode("idna").decode("ascii")
    kept = "".join(c for c in label if not stringprep.in_table_b1(c))  # IDNA's removals
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", kept).casefold())
    told = folded if folded.isascii() else "xn--" + folded.encode("punycode").decode("ascii")
    if told != encoded or _NO_HOST.search(folded):
        raise UnicodeError(label)
    return encoded


def _port(text: str, scheme: str, port: str) -> str:
    """The port to write ('' for none or the scheme's default)."""
    if not port:  # "http://x:" is http://x, as a browser's URL parser has it
        return ""
    if "*" in port and re.fullmatch(r"[0-9*]+", port):
        return port  # a pattern: http://localhost:*
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) <= 65535:
        raise ValueError(f"'{text}' has no valid port ('{port}'): write a number from 1 to "
                         f"65535 after the host, or none for the scheme's default, "
                         f"{_EXAMPLE}")
    return "" if str(int(port)) == DEFAULT_PORTS.get(scheme) else str(int(port))


def origin_forms(origin: str) -> tuple[str, ...]:
    """The forms of a request's ``Origin`` a listed entry may match: as browsers send it
    and, for a default port, with it written out (``http://localhost:*`` matches
    ``http://localhost``, as the Host/Origin guard has it).  A value that is no origin
    is compared as sent, in lower case."""
    try:
        short = allowed_origin(origin)
    except ValueError:
        return (origin.strip().lower(),)
    scheme, _, host = short.partition("://")
    if short == "*" or scheme not in DEFAULT_PORTS or _has_port(host):
        return (short,)
    return short, f"{short}:{DEFAULT_PORTS[scheme]}"


def _has_port(host: str) -> bool:
    return ":" in host.rpartition("]")[2]


def with_public_origin(origins: list[str], public_url: str | None) -> list[str]:
    """``origins`` (``MCP_GATEWAY_ALLOWED_ORIGINS``) and ``public_url``'s origin: the
    gateway's own pages behind a reverse proxy are served from it, and a proxy whose
    ``Host`` drops the port (nginx's ``$host``, on a port other than 443) made their
    same-origin check fail, refusing the dashboard's login form with 403."""
    match = _ORIGIN.fullmatch(public_url or "")
    if match is None or not match["host"] or "@" in match["host"]:
        return list(origins)
    port = match["port"] or ""
    try:
        own = allowed_origin(f"{match['scheme']}://{match['host']}{':' + port if port else ''}")
    except ValueError:  # no origin to add (a bad port): the URL's own check says so
        return list(origins)
    if "*" in own:  # a pattern, not the gateway's origin (public_url refuses it)
        return list(origins)
    return list(origins) if own in origins else [*origins, own]
