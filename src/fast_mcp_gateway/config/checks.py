"""Checks of a whole document and across the fields of one server; the wording of schema
errors.

Each check returns ``(field, message)`` for the first problem, the message saying what to
change.  Values shown in messages are masked with the server's secrets.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import types
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel

from fast_mcp_gateway.config.eras import era_problem
from fast_mcp_gateway.config.host_keys import HOST_KEYS
from fast_mcp_gateway.config.schema import INTERNAL_FIELDS, ServerConfig
from fast_mcp_gateway.config.settings import default_db_path
from fast_mcp_gateway.telemetry.redaction import mask_text

Problem = tuple[str, str] | None
Fail = Callable[[str | None, str | None, str], None]
# servers.x.rate_limit.tools.t.per_second is the deepest real setting (6 levels).
MAX_DEPTH = 24
_URL = re.compile(r"(?i)^https?://[^/\s?#]+")
# `python -m` targets that start the gateway (not its demo servers, which are upstreams).
_GATEWAY_MODULES = ("fast_mcp_gateway", "fast_mcp_gateway.__main__", "fast_mcp_gateway.cli",
                    "fast_mcp_gateway.cli.main")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def check_server(server: ServerConfig, source: str) -> Problem:
    """The first cross-field problem of a validated server, or None."""
    if server.instances:
        if server.command is not None or server.url is not None:
            return ("instances", "give either 'instances' or a top-level 'command'/'url'")
        if server.replicas != 1:
            return ("replicas", "'replicas' copies one 'command'; with 'instances' list each")
        for i, (replica, _) in enumerate(server.replica_configs()):
            problem = _check_target(replica, source)
            if problem:
                return (f"instances[{i}].{problem[0]}", problem[1])
        return era_problem(server) or _check_policies(server)
    return _check_target(server, source) or era_problem(server) or _check_policies(server)


def _check_target(server: ServerConfig, source: str) -> Problem:
    if server.command is None and server.url is None:
        return ("command", "needs either 'command' (a local stdio server) or 'url' (a remote one)")
    if server.command is not None and server.url is not None:
        return ("url", "has both 'command' and 'url'; keep the one that reaches the server")
    if server.command is not None:
        return _check_stdio(server, source)
    assert server.url is not None
    if server.transport == "stdio":
        return ("transport", "'stdio' needs a 'command', not a 'url'")
    control = next((i for i, c in enumerate(server.url) if unicodedata.category(c) == "Cc"),
                   None)
    if control is not None:  # CR/LF would split a request line: httpx refuses at connect
        char = server.url[control]
        return ("url", f"holds the control character {char!r} (U+{ord(char):04X}) at "
                       f"position {control}, which no URL may hold; remove it (or "
                       f"percent-encode it, e.g. %{ord(char):02X}, if the server expects it)")
    if not _URL.match(server.url):
        return ("url", f"{_show(server.url, server)!r} is not an http(s) URL; write e.g. "
                       "http://127.0.0.1:9000/mcp")
    try:
        urlsplit(server.url).port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:  # a port out of range or not a number, a broken [IPv6]
        return ("url", f"is not a valid URL: {exc}; write e.g. http://127.0.0.1:9000/mcp")
    if server.args or server.env or server.cwd:
        return ("args", "args/env/cwd only apply to stdio servers (with 'command')")
    for name, value in server.headers.items():
        if not _HEADER_NAME.match(name):
            return (f"headers.{name}", "is not a valid header name (letters, digits, '-')")
        if any(c in value for c in "\r\n\x00"):
            return (f"headers.{name}", "must be a single line (no line breaks)")
        bad = next((c for c in value if c != "\t" and unicodedata.category(c) == "Cc"), None)
        if bad is not None:  # refused by the HTTP client at connect otherwise
            return (f"headers.{name}", f"holds the control character {bad!r} "
                                       f"(U+{ord(bad):04X}); remove it")
    return None


def _check_stdio(server: ServerConfig, source: str) -> Problem:
    command = server.command
    assert command is not None
    if server.transport not in (None, "stdio"):
        return ("transport", f"'{server.transport}' needs a 'url', not a 'command'")
    if server.headers:
        return ("headers", "headers only apply to http/sse servers (with 'url')")
    if not command.strip():
        return ("command", "is empty; give the program to run, e.g. npx or uvx")
    texts = [("command", command), *((f"args[{i}]", a) for i, a in enumerate(server.args)),
             *((f"env.{k}", v) for k, v in server.env.items()), ("cwd", server.cwd or "")]
    for field, text in texts:
        if "\x00" in text:
            return (field, "contains a NUL character, which no process accepts; remove it")
    for key in server.env:
        if not key or "=" in key or "\x00" in key:
            return (f"env.{key}", "is not a valid variable name (no '=', not empty)")
    if not server.args and _command_line(command, server.cwd):
        words = _split(command.strip())
        return ("command", f"'{_show(command, server)}' is not a program; put the arguments "
                           f"in 'args': command: {_show(words[0], server)}, args: "
                           f"{_show(repr(words[1:]), server)}")
    if _runs_this_gateway(server, source):
        return ("command", "runs this gateway itself ('mcp-gateway serve' with this same "
                           "config), which would start gateways inside gateways; remove this "
                           "server and list its servers directly (a second gateway needs its "
                           "own --config file)")
    return _check_cwd(server)


def _check_cwd(server: ServerConfig) -> Problem:
    if server.cwd is None:
        return None
    shown = _show(server.cwd, server)
    try:
        exists, is_dir = os.path.exists(server.cwd), os.path.isdir(server.cwd)
    except (OSError, ValueError) as exc:
        return ("cwd", f"cannot use directory {shown!r}: {exc}; fix the path")
    if not exists:
        return ("cwd", f"directory {shown!r} does not exist; create it or fix the path")
    if not is_dir:
        return ("cwd", f"{shown!r} is a file, not a directory; give the directory to run in")
    return None


def _check_policies(server: ServerConfig) -> Problem:
    key = server.hash_key
    if key is not None and key != "session" and not re.match(r"^arguments\.[^.\s]+$", key):
        return ("hash_key", "use 'arguments.<argument name>' or 'session'")
    if server.balance != "hash" and key is not None:
        return ("hash_key", "only used with 'balance: hash'")
    h = server.health
    if h.degraded_success > h.healthy_success:
        return ("health.degraded_success", "must not exceed health.healthy_success")
    if h.degraded_latency_ms < h.healthy_latency_ms:
        return ("health.degraded_latency_ms", "must not be below health.healthy_latency_ms")
    return None


def _runs_this_gateway(server: ServerConfig, source: str) -> bool:
    """Whether the command is ``mcp-gateway serve`` reading this same config file.

    Without ``--config`` a nested gateway reads ``$MCP_GATEWAY_CONFIG`` or ./servers.yaml,
    most likely this file; another explicit file is a deliberate chain and allowed.
    """
    argv = _serve_argv(server)
    if argv is None:
        return False
    config = _option(argv, "--config", "-c") or server.env.get("MCP_GATEWAY_CONFIG")
    return config is None or _same_path(server, config, source)


def nested_gateway_problem(server: ServerConfig, config: str | os.PathLike[str] | None,
                           db: str | None) -> str | None:
    """Why a runtime registration that runs ``mcp-gateway serve`` would start gateways
    inside gateways (None: it would not, or it runs no gateway).

    Registrations live in the store: a nested gateway on this gateway's store loads the
    registration that runs it, and starts itself again, without end (an imported Claude
    Desktop file that lists this gateway did it).  One reading this gateway's config
    file is refused as the file's own check refuses it.  ``config``/``db``: this
    gateway's (``db`` None: it has no store)."""
    argv = _serve_argv(server)
    if argv is None:
        return None
    if config is not None and _runs_this_gateway(server, os.fspath(config)):
        return ("runs this gateway itself ('mcp-gateway serve' with this same config), "
                "which would start gateways inside gateways; add its servers directly")
    if db is None or "--no-db" in argv \
            or server.env.get("MCP_GATEWAY_RECORD_CALLS", "").lower() in ("false", "0", "no"):
        return None
    nested = _option(argv, "--db", "--db") or server.env.get("MCP_GATEWAY_DB") \
        or str(default_db_path())
    if nested != db and not _same_path(server, nested, db):
        return None
    return ("runs a gateway on this gateway's own store, which holds this registration: "
            "it would start itself again, without end; give it a store of its own "
            "('--db PATH' or '--no-db' in its args), or add its servers directly")


def _serve_argv(server: ServerConfig) -> list[str] | None:
    """The gateway's own arguments when the server runs ``mcp-gateway serve``, else None."""
    if server.command is None:
        return None
    argv = _gateway_argv(server.command, server.args)
    positional = [a for a in argv or () if not a.startswith("-")]
    if argv is None or (positional and positional[0] != "serve"):
        return None
    return argv


def _same_path(server: ServerConfig, path: str, other: str) -> bool:
    """Whether ``path``, as the server's process sees it (from its ``cwd``), is ``other``."""
    base = Path(server.cwd) if server.cwd else Path.cwd()
    try:
        return (base / path).resolve() == Path(other).resolve()
    except (OSError, ValueError):
        return False


def _gateway_argv(command: str, args: Sequence[str]) -> list[str] | None:
    """The gateway's own arguments when ``command args`` runs the gateway, else None."""
    path = PureWindowsPath(command) if "\\" in command else PurePosixPath(command)
    base = path.name.lower()
    for suffix in (".exe", ".cmd", ".bat"):
        base = base.removesuffix(suffix)
    argv = list(args)
    if base in ("mcp-gateway", "fast-mcp-gateway"):
        return argv
    if base.startswith("python") or base == "py" or command == sys.executable:
        for i, arg in enumerate(argv):
            module = argv[i + 1] if arg == "-m" and i + 1 < len(argv) else (
                arg[2:] if arg.startswith("-m") and len(arg) > 2 else None)
            if module is not None:
                ours = module in _GATEWAY_MODULES
                return argv[i + (2 if arg == "-m" else 1):] if ours else None
        return None
    if base in ("uvx", "uv", "pipx"):
        for i, arg in enumerate(argv):
            name = re.split(r"[=<>@\[]", arg, maxsplit=1)[0]
            if name in ("mcp-gateway", "fast-mcp-gateway") and (i == 0 or argv[i - 1] != "--from"):
                return argv[i + 1:]
    return None


def _option(argv: list[str], long: str, short: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg in (long, short) and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
        if arg.startswith(short) and len(arg) > len(short) and not arg.startswith("--"):
            return arg[len(short):]
    return None


def _command_line(command: str, cwd: str | None) -> bool:
    """Whether ``command`` is a whole command line (``npx -y @scope/server``) rather
    than a program: it has words, is no program or file as a whole, and its first word
    is a program name (a path only if that file is there: ``/opt/My Servers/x`` is a path
    with a space)."""
    command = command.strip()
    if not any(c.isspace() for c in command) or shutil.which(command) is not None:
        return False
    words = _split(command)
    first = words[0] if words else ""
    if any(sep in first for sep in "/\\"):
        return os.path.isfile(os.path.join(cwd or "", first))
    if not any(sep in command for sep in "/\\"):
        return True  # no path at all: words
    # A '/' further on: a program and its arguments (``npx -y @scope/server``) when the
    # first word is one, else perhaps a relative path with a space (``My Servers/x``).
    return not os.path.exists(os.path.join(cwd or "", command)) and (
        first in _LAUNCHERS or shutil.which(first) is not None)


# What MCP servers are most often started with (upstream/launch.py names typos of them).
_LAUNCHERS = frozenset({"npx", "uvx", "uv", "node", "python3", "python", "docker", "deno",
                        "bunx", "bun", "pipx", "java"})


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def _show(text: str, server: ServerConfig) -> str:
    # URL credentials too: an 'ftp://user:password@...' refused was echoed whole.
    return mask_text(text, server.secrets)


def check_document(data: Any, fail: Fail) -> None:
    """Refuse what no valid config contains, before any model sees it: keys that are not
    strings (YAML reads ``1:``, ``~:``, ``yes:`` as a number, null and true), nesting
    deeper than any setting, and alias cycles (``&a [*a]``)."""
    finished: set[int] = set()  # aliased nodes are shared: walk each once
    on_path: set[int] = set()

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if not isinstance(value, dict | list):
            return
        if id(value) in on_path:
            fail(*_locate(path), "refers to itself through a YAML alias; a config cannot "
                                 "contain itself")
            return
        if id(value) in finished:
            return
        if len(path) >= MAX_DEPTH:
            fail(*_locate(path[:3]), f"is nested more than {MAX_DEPTH} levels deep; no "
                                     "setting is that deep")
            return
        on_path.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    fail(*_locate(path), _key_problem(key))
                    continue
                walk(item, (*path, key))
        else:
            for index, item in enumerate(value):
                walk(item, (*path, f"[{index}]"))
        on_path.discard(id(value))
        finished.add(id(value))

    walk(data, ())


def _locate(path: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(server, field) for a document path, e.g. servers.x.env.A → ('x', 'env.A')."""
    if len(path) >= 2 and path[0] in ("servers", "mcpServers"):
        return path[1], field_path(path[2:]) or None
    return None, field_path(path) or None


def _key_problem(key: Any) -> str:
    if key is None:
        return "has an empty key (or '~', which YAML reads as null); write a name, in quotes"
    if isinstance(key, bool):
        return (f"has a key YAML reads as {str(key).lower()}; put the key in quotes, "
                f"e.g. '{str(key).lower()}':")
    if isinstance(key, int | float):
        return f"has the key {short(key)}, which YAML reads as a number; put it in quotes"
    if isinstance(key, date):
        return "has a key YAML reads as a date; put it in quotes"
    return f"has a key of type {type(key).__name__}; keys must be names (put them in quotes)"


def short(value: Any) -> str:
    """A value's repr, cut to fit in a message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------
# Schema errors
# ---------------------------------------------------------------------------


def field_path(loc: Sequence[Any]) -> str:
    """A pydantic location as written in the file: ``instances[0].env.A``."""
    out = ""
    for part in loc:
        if isinstance(part, int) or (isinstance(part, str) and part.startswith("[")):
            out += part if isinstance(part, str) else f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def explain(err: Any, model: type[BaseModel]) -> str:
    """A pydantic error as an instruction; never echoes the value (it may be a secret)."""
    kind = err.get("type", "")
    loc = tuple(err.get("loc", ()))
    value = err.get("input")
    quoted = " (without quotes)" if isinstance(value, str) else ""
    if kind == "extra_forbidden":
        parent = model_at(model, loc[:-1]) or model
        if parent is ServerConfig and str(loc[-1]) in HOST_KEYS:
            return "unknown field: " + HOST_KEYS[str(loc[-1])]
        return "unknown field" + suggest(str(loc[-1]), field_names(parent))
    if kind == "missing":
        return "is required"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number" + (", not true/false" if isinstance(value, bool)
                                           else quoted)
    if kind in ("float_type", "float_parsing"):
        return "must be a number" + (", not true/false" if isinstance(value, bool) else quoted)
    if kind == "finite_number":
        return "must be a finite number (not .inf or .nan)"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false" + quoted
    if kind == "string_type":
        return "must be text" + ("" if isinstance(value, list | dict)
                                 else "; put the value in quotes")
    if kind in ("tuple_type", "list_type"):
        name = next((p for p in reversed(loc) if isinstance(p, str)), "args")
        if isinstance(value, str) and name == "args":
            return (f"must be a list, e.g. {name}: [\"-y\", \"some-package\"]; a single "
                    "string is not split into words")
        if isinstance(value, str) and len(value) <= 40 and "${" not in value:
            # The value itself as the one item (names and patterns, never args' secrets).
            return f"must be a list, e.g. {name}: [{json.dumps(value)}]"
        return f"must be a list, e.g. {name}: [a, b]"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping of settings (key: value)" + (
            "; it came as text: send the object itself, not a string holding its JSON"
            if isinstance(value, str) and value.lstrip().startswith("{") else "")
    if kind == "string_too_long" and isinstance(value, str):
        limit = err.get("ctx", {}).get("max_length")
        return (f"is {len(value)} characters long; at most {limit} are accepted: "
                "shorten it")
    if kind in ("string_too_short", "too_short"):  # pydantic: "String should have at..."
        least = err.get("ctx", {}).get("min_length", 1)
        if not isinstance(value, str):
            return f"must hold at least {least} item{'s' if least != 1 else ''}"
        return "must not be empty" if least == 1 else (
            f"must be at least {least} characters long")
    if kind == "literal_error" and isinstance(value, bool):
        return _bare_yaml_word(err, value)
    message = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
    return message.replace("Input should be", "must be")


def model_at(model: type[BaseModel], path: Sequence[Any]) -> type[BaseModel] | None:
    """The model that holds the fields at ``path`` inside ``model`` (through optionals,
    tuples and dicts), so a nested typo is matched against its own parent's keys."""
    current: Any = model
    for part in path:
        current = _step(current, part)
        if current is None:
            return None
    return next((c for c in _alternatives(current)
                 if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _step(annotation: Any, part: Any) -> Any:
    for candidate in _alternatives(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            field = candidate.model_fields.get(part) if isinstance(part, str) else None
            if field is not None:
                return field.annotation
            continue
        origin, args = get_origin(candidate), get_args(candidate)
        if origin is dict and len(args) == 2:
            return args[1]
        if origin in (tuple, list) and args:
            return args[0]
    return None


def _alternatives(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return [a for arg in get_args(annotation) if arg is not type(None)
                for a in _alternatives(arg)]
    if origin is Annotated:
        return _alternatives(get_args(annotation)[0])
    return [annotation]


def field_names(model: type[BaseModel]) -> list[str]:
    """``model``'s fields as they are written (an alert rule's ``for``, not ``for_``)."""
    return [info.alias or name for name, info in model.model_fields.items()]


def claude_key_problem(key: str, known: list[str]) -> str:
    """What an mcpServers entry's unknown ``key`` is: a setting of ours (said with how to
    use it: no mcpServers entry takes one), else a typo of one of ``known``."""
    if key not in set(ServerConfig.model_fields) - INTERNAL_FIELDS:
        return "unknown mcpServers key" + suggest(key, known)
    return ("is a servers.yaml setting, not an mcpServers key: to use it, put the servers "
            "under 'servers:' instead of 'mcpServers:' (command, args, env, url as written; "
            "'type' becomes 'transport', 'disabled: true' 'enabled: false')"
            + ("; or set gateway.timeouts, for every server" if key == "timeouts" else ""))


def suggest(word: str, choices: list[str]) -> str:
    """``; did you mean 'x'?`` or the list of known keys (internal fields never shown)."""
    import difflib  # here, not at the top: only a typo needs it (~0.15 MB of RSS)

    visible = [c for c in choices if c not in INTERNAL_FIELDS]
    close = difflib.get_close_matches(word, visible, n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(visible)}"


# The words YAML 1.1 (PyYAML) reads as booleans when they are not quoted.
_YAML_BOOL_WORDS = {False: ("off", "no", "false"), True: ("on", "yes", "true")}


def _bare_yaml_word(err: Any, value: bool) -> str:
    """A choice such as ``admin: off`` that YAML read as a boolean: the user wrote one of
    the allowed words, so saying only "must be ... or 'off'" would read as nonsense."""
    expected = str((err.get("ctx") or {}).get("expected", ""))
    options = re.findall(r"'([^']*)'", expected)
    meant = next((o for o in options if o.lower() in _YAML_BOOL_WORDS[value]), None)
    choices = f"must be {expected}" if expected else "must be one of the listed words"
    if meant is None:
        return f"{choices}, not true/false"
    words = "/".join(_YAML_BOOL_WORDS[value])
    return (f"{choices}; YAML reads a bare {words} as {str(value).lower()}: to mean "
            f"{meant}, put it in quotes (\"{meant}\")")
