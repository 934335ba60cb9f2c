"""``${VAR}`` interpolation in the fields that reach a process or a connection.

``${VAR}``, ``${VAR:-default}`` (the default when VAR is unset or empty, as in a shell) and
VS Code's ``${env:VAR}``; ``$$`` is a literal ``$``.  Anything else starting with ``${`` (an
unclosed ``${VAR``, a bad name, a nested default) is an error, never left as literal text.
A Claude-Desktop ``mcpServers`` entry is read as its hosts read it (``from_claude_text``):
``$$`` there is two dollars (a password ``pa$$word`` reaches the server unchanged), only
``$${`` is a literal ``${``.
The values that came from the environment are collected as secrets, for redaction.

``allow`` is the interpolation policy: ``None`` for the operator's own file (every variable),
else the ``gateway.env_allow`` patterns, for anything registered at runtime (a
``${caller.token}`` / ``${caller.claims.<name>}`` header too: ``env_allowed``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fast_mcp_gateway.config.schema import CALLER_REFERENCE, env_allowed

INTERPOLATED_FIELDS = ("command", "args", "env", "cwd", "url", "headers", "auth", "tls")
_VAR = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
_CLAUDE_DOLLAR = re.compile(r"\$\$\{|\$(?!\{)")
_CALLER = re.compile(r"caller\.(token|claims\.[A-Za-z0-9_.:/-]+)\}")

# (field, message) for one problem in the server being read.
Report = Callable[[str, str], None]


def interpolate(value: Any, field: str, env: Mapping[str, str], allow: Sequence[str] | None,
                secrets: set[str], report: Report) -> Any:
    """``value`` with every reference expanded (``each_text``); other shapes are returned
    as they are, for the schema to reject with a clear message."""
    return each_text(value, field, lambda text, where: _expand(text, where, env, allow,
                                                               secrets, report))


def each_text(value: Any, field: str, change: Callable[[str, str], str]) -> Any:
    """``value`` of ``field`` with ``change(text, where)`` applied to each string that
    reaches a process or a connection: the value itself, the strings of ``args``, the
    values of ``env``/``headers`` and the text settings of ``auth`` and ``tls``
    (``where``: ``args[0]``, ``env.KEY``, ``auth.client_secret``,
    ``tls.client_key_password``...)."""
    if isinstance(value, str):
        return change(value, field)
    if field == "args" and isinstance(value, list):
        return [change(item, f"args[{i}]") if isinstance(item, str) else item
                for i, item in enumerate(value)]
    if field in ("env", "headers", "auth", "tls") and isinstance(value, dict):
        return {key: change(item, f"{field}.{key}") if isinstance(item, str) else item
                for key, item in value.items()}
    return value


def from_claude_text(value: Any, field: str) -> Any:
    """A Claude-Desktop entry's ``field`` written as servers.yaml writes the same text.

    Claude Desktop and Claude Code pass ``$`` and ``$$`` through unchanged (Claude Code
    expands ``${VAR}`` and ``${VAR:-default}`` only), so each ``$`` that does not start a
    reference is doubled here; ``$${``, which such a host has no use for, stays the
    escape of a literal ``${``.  The strings ``interpolate`` expands, others unchanged."""
    return each_text(value, field, lambda text, _where: _CLAUDE_DOLLAR.sub(
        lambda m: m[0] if m[0] == "$${" else "$$", text))


def _expand(text: str, field: str, env: Mapping[str, str], allow: Sequence[str] | None,
            secrets: set[str], report: Report) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        var, default = match.group(1), match.group(2)
        if var is None:
            if _CALLER.match(text, match.end()) is not None:
                # The caller's credential, filled in per call; only an HTTP header may
                # carry it (the schema checks the server is HTTP).
                if not field.startswith("headers."):
                    report(field, "${caller.token} and ${caller.claims.<name>} may only be "
                                  "used in 'headers' (of an HTTP upstream)")
                return "${"  # checked against ``allow`` in the expanded text, below
            report(field, _bad_reference(text, match.start()))
            return ""
        if default is not None and "${" in default:
            report(field, f"the default of ${{{var}:-...}} cannot contain another ${{...}}; "
                          "give a plain default")
            return ""
        if allow is not None and not env_allowed(var, allow):
            # Says nothing about whether the variable is set: that is the operator's business.
            report(field, f"environment variable '{var}' may not be used by a runtime "
                          "registration; the operator can allow it in servers.yaml with "
                          f"'gateway: {{env_allow: [{var}]}}'")
            return ""
        value = env.get(var)
        if value:
            if var != "GATEWAY_PYTHON":
                secrets.add(value)
            return value
        if default is not None:
            return default
        if value is not None:
            return value
        # "export it" alone misled: a host starts the gateway with the environment it
        # is given (Claude Desktop, the Inspector: only their entry's "env").
        report(field, f"environment variable '{var}' is not set in the gateway's "
                      "environment; export it where the gateway is started (started by a "
                      "host such as Claude Desktop: in the \"env\" of the gateway's entry "
                      f"in the host's config), or write ${{{var}:-default}} to give a "
                      "fallback")
        return ""

    expanded = _VAR.sub(replace, text)
    if allow is not None and field.startswith("headers."):
        # Checked on the text as expanded, since that is what ``for_caller`` fills in
        # per call: ``$${caller.token}`` (an escaped ``${``) or a default ending in ``$``
        # before ``{caller.token}`` expands to the same reference as writing it.
        for ref in dict.fromkeys(f"caller.{m[1]}" for m in CALLER_REFERENCE.finditer(expanded)):
            if not env_allowed(ref, allow):
                # A registration naming its own URL would collect the token (or claim)
                # of everyone who calls its tools, admins included.
                report(field, f"${{{ref}}} may not be used by a runtime registration: it "
                              "would send every caller's credential to the URL it names; "
                              "write the server in servers.yaml, or the operator can allow "
                              f"it there with 'gateway: {{env_allow: [{ref}]}}'")
    return expanded


def _bad_reference(text: str, start: int) -> str:
    rest = text[start + 2:]
    if rest.startswith("input:"):
        return ("VS Code's ${input:...} prompts are not supported; set an environment "
                "variable and write ${VAR}")
    if rest.lower().startswith("caller"):
        return _bad_caller(rest)
    problem = "has no closing '}'" if "}" not in rest else "is not a valid variable reference"
    return (f"'${{' at character {start + 1} {problem}; write ${{VAR}} or ${{VAR:-default}} "
            "(VAR: letters, digits and '_'), or $${ for a literal ${")


def _bad_caller(rest: str) -> str:
    """A ``${caller...}`` that is neither ``${caller.token}`` nor ``${caller.claims.x}``."""
    import difflib  # here, not at the top: only a typo needs it (~0.15 MB of RSS)

    end = rest.find("}")
    written = "${" + (rest[:end + 1] if end >= 0 else rest[:40])
    path = rest[len("caller."):end] if end >= 0 else ""
    guess = ("${caller.token}" if difflib.get_close_matches(path, ["token"], n=1, cutoff=0.6)
             else "${caller.claims.<name>}" if path.startswith(("claim", "clam", "claism"))
             else None)
    hint = f"; did you mean {guess}?" if guess else ""
    closing = "" if end >= 0 else " (it also has no closing '}')"
    return (f"{written!r} is not a caller reference{closing}{hint} The caller references "
            "are ${caller.token} (the caller's bearer token) and ${caller.claims.<name>} (one "
            "claim of the caller's JWT, e.g. ${caller.claims.sub}), in 'headers' of an HTTP "
            "upstream")
