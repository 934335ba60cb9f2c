"""Server names as the gateway accepts and quotes them: addressable (a path segment of
the REST API and the dashboard), at most ``MAX_SERVER_NAME`` characters, and cut to
their head where errors and logs quote a long one; ``host_safe``: a name as hosts take
it in a tool's name."""

from __future__ import annotations

import re
import unicodedata

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# Letters that NFKD does not take apart, in their usual ASCII spelling.
_SPELLED = str.maketrans({"ß": "ss", "ẞ": "SS", "Æ": "AE", "æ": "ae", "Œ": "OE", "œ": "oe",
                          "Ø": "O", "ø": "o", "Ł": "L", "ł": "l", "Đ": "D", "đ": "d",
                          "Ð": "D", "ð": "d", "Þ": "Th", "þ": "th", "\u0131": "i"})


def host_safe(text: str) -> str:
    """``text`` in the characters hosts accept in a tool's name (``[A-Za-z0-9_-]``:
    Claude Desktop's; MCP's SEP-986 adds ``.``): a letter with an accent is written
    without it (``Ümlaut`` -> ``Umlaut``, ``ß`` -> ``ss``; NFKD, marks dropped), any
    other character becomes ``_``.  An ASCII ``text`` gets only the replacement (as
    before transliteration: its namespace and names do not change)."""
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text.translate(_SPELLED))
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _UNSAFE.sub("_", text)


def ascii_replaced(text: str) -> str:
    """``text`` host-safe by the rule before transliteration: each character outside
    ``[A-Za-z0-9_-]`` a ``_`` (``café`` -> ``caf_``); names bound then keep it."""
    return _UNSAFE.sub("_", text)


def unaddressable_name(name: str) -> str | None:
    """Why the REST API and the dashboard cannot address a server named ``name`` (None:
    they can): the name is a path segment of their URLs.  Runtime registrations refuse
    such a name (``admin/servers.py``); ``servers.yaml`` is warned about it."""
    if name in (".", ".."):  # clients and routers fold a dot segment: never reaches it
        return (f"'{name}' cannot be a server name: it is a path segment of "
                "/api/v1/servers/<name> and /ui/servers/<name>, where it means this or "
                "the parent folder; choose a name with letters or digits")
    if "/" not in name:
        return None
    return ("a server name may not contain '/': it is a path segment of "
            "/api/v1/servers/<name> and /ui/servers/<name>; choose another name, e.g. "
            f"'{name.replace('/', '-')}'")


NEW_NAME_CHARS = "letters (A-Z, a-z), digits, '-' and '_'"
"""What a server added at runtime may be called (``unusual_name``), as the dashboard's
form and the add operations' descriptions say."""


def unusual_name(name: str) -> str | None:
    """Why a server *added at runtime* may not be called ``name`` (None: it may): only
    ``NEW_NAME_CHARS``, the characters of a tool's name in every host, which its tools'
    names begin with.  A config file's entry (or an imported one: a Claude Desktop
    ``mcpServers`` key such as "My Server") is taken as written, its namespace made
    ``host_safe``; so is a registration stored before this rule."""
    if not name or not _UNSAFE.search(name):
        return None
    odd = ", ".join(_shown_char(c) for c in dict.fromkeys(_UNSAFE.findall(name)))
    instead = host_safe(name).strip("_") or "server"
    return (f"a server name may contain only {NEW_NAME_CHARS} (its tools' names begin "
            "with it, and hosts such as Claude Desktop take no other characters in a "
            f"tool's name); it holds {odd}: choose another name, e.g. '{instead}'")


def _shown_char(char: str) -> str:
    return {" ": "a space", "\t": "a tab"}.get(char, repr(char) if char.isprintable()
                                               else f"U+{ord(char):04X}")


MAX_SERVER_NAME = 64
"""The longest server name accepted where names enter (a config file, an add or an
import): the name is the default prefix of each of its tools' names, which hosts limit
to 64 characters (Claude Desktop: ``^[a-zA-Z0-9_-]{1,64}$``; longer exposed names are
shortened with a hash, ``routing/naming.py``).  A runtime registration stored before
the limit keeps running, with a warning at start (``admin/control.py``)."""


def overlong_name(name: str, what: str = "name") -> str | None:
    """Why ``name`` is too long for a server's name, or (``what="namespace"``) for its
    ``namespace:``, which begins its tools' names in its stead (None: it is not)."""
    if len(name) <= MAX_SERVER_NAME:
        return None
    kind = "a server name" if what == "name" else f"a {what}"
    return (f"the {what} is {len(name)} characters long; {kind} has at most "
            f"{MAX_SERVER_NAME} (it begins each of its tools' names, and hosts such as Claude "
            f"Desktop accept tool names of at most 64 characters): choose a shorter {what}")


def shown_name(name: str, longest: int = MAX_SERVER_NAME, head: int = 40) -> str:
    """``name`` as errors and logs quote it: one over ``longest`` characters cut to its
    ``head``, with its length."""
    return name if len(name) <= longest else f"{name[:head]}... ({len(name)} characters)"


LOGGED_NAME = 100
"""The longest name (of a tool, prompt or resource: an upstream's to choose) a log line
quotes whole; a longer one is cut to its head (``logged_name``)."""


def logged_name(name: str) -> str:
    """``name`` as a log line quotes it (``LOGGED_NAME``)."""
    return shown_name(name, LOGGED_NAME, LOGGED_NAME)
