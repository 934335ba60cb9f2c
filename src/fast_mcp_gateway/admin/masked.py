"""Secrets shown as ``***`` coming back in a change: "keep the stored value", where safe.

The admin tools, REST and the dashboard show a server's settings with credentials and
``${VAR}`` values masked (``ServerConfig.redacted``).  A person (or a host's model) who
reads them, changes one field and writes the whole back sends the masks too: stored as
they are, the server would start with ``API_KEY=***``.  ``keep_masked`` puts the stored
value back for a mask sent unchanged under the same key (an env variable, a header, the
argument or URL it was shown as), but only while it still goes where it went: the same
command (stdio) or the same URL origin (HTTP); otherwise the change could send a kept
secret to a new program or host, so it must be typed again (or a ``${VAR}``).  A value
that came from servers.yaml's environment is never copied into the store.  Every other
``***`` is an error on its field saying what to do.  One rule for every surface:
``admin.servers`` applies it to ``add_server``/``update_server`` (tools, REST), the
dashboard's form to what it sends.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import urlsplit

from fast_mcp_gateway.admin.context import AdminContext
from fast_mcp_gateway.config.interpolation import INTERPOLATED_FIELDS
from fast_mcp_gateway.config.registrations import TOMBSTONE
from fast_mcp_gateway.config.schema import INTERNAL_FIELDS, ServerConfig
from fast_mcp_gateway.errors import ConfigError, ConfigIssue

MASK = "***"


def holds_mask(raw: dict[str, Any]) -> bool:
    """Whether a change sends a ``***`` anywhere ``keep_masked`` looks."""
    return any(MASK in json.dumps(raw.get(key))
               for key in ("url", "env", "headers", "args", "instances"))


async def unmasked(ctx: AdminContext, name: str, raw: dict[str, Any], source: str
                   ) -> dict[str, Any]:
    """``raw`` (a copy) with each mask sent back unchanged replaced by the stored value
    (``name`` running: an update; else an add, where no mask can be kept).  Raises
    ``ConfigError`` naming each field that holds a mask it cannot keep."""
    if not holds_mask(raw):
        return raw
    raw = copy.deepcopy(raw)
    errors: dict[str, str] = {}
    if name in ctx.manager.services:
        stored, from_env = await stored_settings(ctx, name)
        keep_masked(raw, stored, ctx.manager.get(name).config.redacted(), errors, from_env)
    else:
        keep_masked(raw, {}, None, errors)
    if errors:
        raise ConfigError([ConfigIssue(source, name, field, message)
                           for field, message in errors.items()])
    return raw


async def stored_settings(ctx: AdminContext, name: str
                          ) -> tuple[dict[str, Any], frozenset[str]]:
    """The settings an edit of ``name`` starts from: its runtime registration as written
    (``${VAR}`` unexpanded), else the running config (values escaped as literal text);
    and the values in them that came from the environment (empty for a registration)."""
    store = ctx.store
    if store is not None:
        for row in await store.servers():
            if row.name == name and isinstance(row.config, dict) and row.config != TOMBSTONE:
                return dict(row.config), frozenset()
    config = ctx.manager.get(name).config
    return literal(config), frozenset(v.replace("$", "$$") for v in config.secrets)


def literal(config: ServerConfig) -> dict[str, Any]:
    """A running config as raw settings that parse back to the same values: a ``$`` in
    an already-expanded value is written ``$$`` so that it is not expanded again."""
    data = {k: v for k, v in config.model_dump(mode="json", exclude_defaults=True).items()
            if k not in INTERNAL_FIELDS}
    for target in (data, *data.get("instances", [])):
        for key in INTERPOLATED_FIELDS:
            if key in target:
                target[key] = _dollars(target[key])
    return data


def _dollars(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_dollars(v) for v in value]
    if isinstance(value, dict):
        return {k: _dollars(v) for k, v in value.items()}
    return value


def keep_masked(raw: dict[str, Any], stored: dict[str, Any], shown: dict[str, Any] | None,
                errors: dict[str, str], from_env: frozenset[str] = frozenset()) -> None:
    """Replace each ``***`` value the form sent back unchanged with the stored one.

    ``shown`` is what the form displayed (the redacted running config; ``None`` when
    adding).  A value is kept only under the same key (an argument: the same displayed
    text), and only while it goes where it went (same command, same URL origin).  A
    value holding one of ``from_env`` (expanded from servers.yaml's ``${VAR}``) is not
    kept: the edit is stored as a registration, and the store never gets a copy of an
    environment secret.  Anything else with ``***`` is an error on its field saying
    what to do."""
    shown = shown or {}
    retype = "type the value again, or write ${VAR} for an allowed environment variable"
    from_file = ("its value comes from an environment variable in servers.yaml, and an "
                 "edit here is saved in the gateway's store, which never holds a copy of "
                 "one: change it in servers.yaml, or")

    def env_secret(value: Any) -> bool:
        return isinstance(value, str) and any(len(s) >= 4 and s in value for s in from_env)

    # Compared as displayed (both sides expanded and masked alike).  Both the command
    # and the URL's origin: a "command": null beside a new URL is no stdio server whose
    # command stayed the same.
    same_place = bool(shown) and raw.get("command") == shown.get("command") and (
        _origin(raw.get("url")) == _origin(shown.get("url")))
    moved = ("the command changed" if raw.get("command") is not None
             else "the URL's host changed")
    if MASK in raw.get("url", "") and raw["url"] == shown.get("url") and "url" in stored:
        if env_secret(stored["url"]):
            errors["url"] = f"the URL's hidden part: {from_file} {retype}"
            return
        raw["url"] = stored["url"]
    if MASK in raw.get("url", ""):
        errors["url"] = f"the URL holds a hidden part (***): {retype}"
    for key in ("env", "headers"):
        values = raw.get(key)
        if not values:
            continue
        kept, missing = stored.get(key) or {}, []
        for k, v in values.items():
            if MASK not in v:
                continue
            if v == (shown.get(key) or {}).get(k) and k in kept:
                if env_secret(kept[k]):
                    errors[key] = f"{k}: {from_file} {retype}"
                elif same_place:
                    values[k] = kept[k]
                else:
                    errors[key] = (f"{k}: {moved}, so the hidden value (***) is not sent "
                                   f"there; {retype}")
            else:
                missing.append(k)
        if missing:
            errors[key] = (f"{', '.join(missing)}: *** stands for a hidden value, and there "
                           f"is none stored under that name to keep; {retype}")
    args = raw.get("args")
    if args:
        was_shown, was_stored = shown.get("args") or [], stored.get("args") or []
        for i, arg in enumerate(args):
            if MASK not in arg:
                continue
            if arg not in was_shown or len(was_shown) != len(was_stored):
                errors["args"] = (f"'{arg}' holds a hidden part (***) that matches no "
                                  f"argument the server was shown with; send the arguments "
                                  f"as shown, or {retype}")
            elif env_secret(was_stored[was_shown.index(arg)]):
                errors["args"] = f"'{arg}': {from_file} {retype}"
            elif not same_place:
                errors["args"] = (f"'{arg}': {moved}, so the hidden part (***) is not "
                                  f"sent there; {retype}")
            else:
                args[i] = was_stored[was_shown.index(arg)]
    if MASK in json.dumps(raw.get("instances")):
        # Not kept per instance: stored as sent, a replica would start with '***'.
        errors["instances"] = (f"an instance holds a hidden value (***), which is not kept "
                               f"for instances; {retype}")


def _origin(url: Any) -> tuple[str, str] | None:
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
