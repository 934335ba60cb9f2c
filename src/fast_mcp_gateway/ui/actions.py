"""The dashboard's server changes: lifecycle actions, add / edit, paste a config.

Each action is one admin operation (``admin.servers``) run as the actor
``dashboard:<principal>`` (audited by the operation itself), behind ``Ui.page`` with
scope ``admin`` (refused with 403 for other tokens, even when forged) and a CSRF token.
Destructive actions (disable, restart, drain, restart a replica, remove) first render a
confirmation page; the confirmed POST carries ``confirm=yes``.  The result is shown on
the server's page.

The add / edit form builds the same settings dict ``servers.yaml`` holds and passes it
to ``add_server`` / ``update_server``, whose validation is the config file's; each
``ConfigIssue`` is shown next to its field.  An edit starts from the server's stored
settings (its registration as written, ``${VAR}`` unexpanded, else the running config),
so settings the form does not show (tools, timeouts, isolation, ...) are kept.  Secrets
are shown masked (``***``) and never sent to the browser; a masked value submitted
unchanged means "keep the stored value" where that is safe (``admin/masked.py``, the
rule the admin tools and REST follow too).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from fast_mcp_gateway.admin import servers
from fast_mcp_gateway.admin.masked import keep_masked, stored_settings
from fast_mcp_gateway.admin.scope import add_refusal
from fast_mcp_gateway.errors import ConfigError, ConfigIssue, Forbidden
from fast_mcp_gateway.store import StoreUnavailable
from fast_mcp_gateway.ui.core import Page, Ui
from fast_mcp_gateway.ui.pages import detail_context, server_name

ACTIONS: dict[str, tuple[str, bool]] = {  # action -> (label, needs confirmation)
    "enable": ("Enable", False),
    "disable": ("Disable", True),
    "restart": ("Restart / reconnect", True),
    "reset_breaker": ("Reset circuit breaker", False),
    "drain": ("Drain replica", True),
    "undrain": ("Return replica to the pool", False),
    "restart_replica": ("Restart replica", True),
    "remove": ("Remove server", True),
}


async def act(page: Page) -> Response:
    name = server_name(page, page.request.path_params["name"])
    action = page.field("action")
    if action not in ACTIONS:
        return page.ui.error(page.request, page.viewer, 400,
                             f"Unknown action '{action}'; one of: {', '.join(ACTIONS)}.")
    label, destructive = ACTIONS[action]
    replica_text = page.field("replica")
    replica = int(replica_text) if replica_text.isdigit() else None
    if action in ("drain", "undrain", "restart_replica") and replica is None:
        return page.ui.error(page.request, page.viewer, 400, f"'{label}' needs a replica "
                             "number (the replica's index on the server page).")
    if destructive and page.field("confirm") != "yes":
        return page.render("confirm.html", name=name, action=action, label=label,
                           replica=replica)
    ctx, actor = page.ctx, page.actor
    result: Any
    if action == "enable":
        result = await servers.enable_server(ctx, actor, name)
    elif action == "disable":
        result = await servers.disable_server(ctx, actor, name)
    elif action == "restart":
        result = await servers.reconnect_server(ctx, actor, name)
    elif action == "reset_breaker":
        result = await servers.reset_breaker(ctx, actor, name, replica)
    elif action == "drain":
        assert replica is not None
        result = await servers.drain_replica(ctx, actor, name, replica, True)
    elif action == "undrain":
        assert replica is not None
        result = await servers.drain_replica(ctx, actor, name, replica, False)
    elif action == "restart_replica":
        assert replica is not None
        result = await servers.restart_replica(ctx, actor, name, replica)
    else:
        report = await servers.remove_server(ctx, actor, name)
        base = str(page.request.scope.get("root_path", ""))
        return page.render("done.html", message=f"Removed server '{name}'.",
                           report=report, back=base + "/")
    state = getattr(result, "state", None)
    message = f"{label}: done" + (f"; the server is now {state}." if state else ".")
    if (note := getattr(result, "note", None)) is not None:  # what its state does not show
        message = f"{note[:1].upper()}{note[1:]}."
    return page.render("server.html", flash=message, **await detail_context(page, name))


# -- add / edit --------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _joined_args(raw: dict[str, Any]) -> str | None:
    """Said next to Arguments when a server did not start and a line of it reads as a
    shell's words (an option, then a space before any '='): typed as in a terminal,
    '-m pkg.module' is one argument, its space included, which the server's error shows
    only as a name with a leading space."""
    for arg in raw.get("args", []):
        option = str(arg).split("=", 1)[0]
        if option.startswith("-") and any(c.isspace() for c in option):
            first, rest = str(arg).split(None, 1)
            return (f"each line is one argument: '{arg}' was passed as one, its space "
                    f"included; if '{first}' and '{rest}' are two, put each on its own line")
    return None


def _pairs(text: str, sep: str, what: str, errors: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in _lines(text):
        key, found, value = line.partition(sep)
        if not found or not key.strip():
            errors[what] = f"'{line}' is not '{'KEY=value' if sep == '=' else 'Name: value'}'"
            continue
        out[key.strip()] = value.strip()
    return out


def config_from_form(page: Page, errors: dict[str, str]) -> dict[str, Any]:
    """The settings dict of the add/edit form (``errors``: fields that did not parse)."""
    kind = page.field("kind", "stdio")
    raw: dict[str, Any] = {}
    if kind == "http":
        raw["url"] = page.field("url").strip()
        headers = _pairs(page.field("headers"), ":", "headers", errors)
        if headers:
            raw["headers"] = headers
        transport = page.field("transport")
        if transport in ("http", "sse"):
            raw["transport"] = transport
    else:
        raw["command"] = page.field("command").strip()
        args = _lines(page.field("args"))
        if args:
            raw["args"] = args
        env = _pairs(page.field("env"), "=", "env", errors)
        if env:
            raw["env"] = env
        if page.field("cwd").strip():
            raw["cwd"] = page.field("cwd").strip()
    for key in ("description", "namespace"):
        if page.field(key).strip():
            raw[key] = page.field(key).strip()
    replicas = page.field("replicas").strip()
    if replicas:
        raw["replicas"] = int(replicas) if replicas.isdigit() else replicas
    # A checked box sends "on" beside the hidden "off" that marks the form as sent.
    if page.form is not None and "on" not in page.form.getlist("enabled"):
        raw["enabled"] = False
    return raw


FORM_KEYS = frozenset({"command", "args", "env", "cwd", "url", "headers", "transport",
                       "description", "namespace", "replicas", "enabled"})


def form_of(config: dict[str, Any]) -> dict[str, str]:
    """The form's fields for a server's (redacted) settings."""
    return {
        "kind": "http" if config.get("url") else "stdio",
        "command": str(config.get("command") or ""),
        "args": "\n".join(str(a) for a in config.get("args", [])),
        "env": "\n".join(f"{k}={v}" for k, v in config.get("env", {}).items()),
        "cwd": str(config.get("cwd") or ""),
        "url": str(config.get("url") or ""),
        "transport": str(config.get("transport") or ""),
        "headers": "\n".join(f"{k}: {v}" for k, v in config.get("headers", {}).items()),
        "description": str(config.get("description") or ""),
        "namespace": str(config.get("namespace") or ""),
        "replicas": str(config.get("replicas") or ""),
        "enabled": "on" if config.get("enabled", True) else "off",
    }


def issues_by_field(exc: ConfigError) -> tuple[dict[str, str], list[str]]:
    """Validation issues keyed by the form field they belong to, and the rest."""
    fields: dict[str, str] = {}
    other: list[str] = []
    for issue in exc.issues:
        key = _field_of(issue)
        if key is None:
            other.append(issue.message if issue.field is None else f"{issue.field}: "
                                                                    f"{issue.message}")
        else:
            fields[key] = (fields[key] + "; " if key in fields else "") + issue.message
    return fields, other


def _field_of(issue: ConfigIssue) -> str | None:
    top = (issue.field or "").split(".")[0].split("[")[0]
    return top if top in {"command", "args", "env", "cwd", "url", "headers", "transport",
                          "description", "namespace", "replicas", "enabled"} else None


async def new_form(page: Page) -> Response:
    # ?name=: the page of a server whose file entry is invalid links here with its name.
    return page.render("server_form.html", editing=None, values=form_of({}), errors={},
                       other=[], name=page.query("name")[:200], paste="", paste_error=None)


async def edit_form(page: Page) -> Response:
    name = server_name(page, page.request.path_params["name"])
    service = page.ctx.manager.get(name)
    # Enabled as it runs: an enable or disable at runtime changes the service, not the
    # config it was started with (saved as shown, the form turned a disabled one on).
    config = {**service.config.redacted(), "enabled": service.enabled}
    return page.render("server_form.html", editing=name, values=form_of(config), errors={},
                       other=[], name=name, paste="", paste_error=None)


async def save(page: Page) -> Response:
    editing = page.request.path_params.get("name")
    if editing is not None:
        editing = server_name(page, editing)
    name = editing or page.field("name").strip()
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "give the server a name (letters, digits, '-' and '_')"
    raw = config_from_form(page, errors)
    values = {k: page.field(k) for k in form_of({})} | {"kind": page.field("kind", "stdio")}
    values["enabled"] = "off" if raw.get("enabled") is False else "on"

    def unsaved(status: int, why: str) -> Response:
        # The form as typed, not a bare error page: the store is away for a while, or
        # the change needs another token (the operator may change the form and retry).
        return page.render("server_form.html", status, editing=editing, values=values,
                           errors={}, other=[], name=name, paste="", paste_error=None,
                           unsaved=f"The server was not saved: {why}")

    other: list[str] = []
    if editing is not None:
        try:
            stored, from_env = await stored_settings(page.ctx, name)
        except StoreUnavailable as exc:
            return unsaved(503, f"{exc}. The form keeps what you typed: save again once "
                                "the database is back.")
        keep_masked(raw, stored, page.ctx.manager.get(name).config.redacted(), errors,
                    from_env)
        carried = {k: v for k, v in stored.items() if k not in FORM_KEYS}
        # Named as what holds them (sec29: an auth: client_secret was said as instances).
        held = [("replica settings (instances)" if k == "instances" else f"{k} settings")
                for k, v in carried.items()
                if any(len(s) >= 4 and s in json.dumps(v) for s in from_env)]
        if held:
            why = (f"this server's {' and '.join(held)} take values from environment "
                   "variables in servers.yaml, which a dashboard edit cannot copy: change it "
                   "in servers.yaml")
            if held == ["replica settings (instances)"]:
                errors["replicas"] = why
            else:
                other.append(why)
        raw = carried | raw
    else:
        keep_masked(raw, {}, None, errors)
    if not errors and not other:
        try:
            if editing is not None:
                report = await servers.update_server(page.ctx, page.actor, name, raw)
            else:
                if not page.viewer.may_use(name):
                    errors["name"] = add_refusal(page.viewer.principal, name)
                    raise ConfigError([])
                report = await servers.add_server(page.ctx, page.actor, name, raw)
        except ConfigError as exc:
            fields, other = issues_by_field(exc)
            errors |= fields
            joined = _joined_args(raw)
            if joined is not None and "args" not in errors:
                errors["args"] = joined
        except StoreUnavailable as exc:
            return unsaved(503, f"{exc}. The form keeps what you typed: save again once "
                                "the database is back.")
        except Forbidden as exc:
            return unsaved(403, f"{exc}.")
        else:
            base = str(page.request.scope.get("root_path", ""))
            return page.render("done.html", report=report, back=f"{base}/servers/{name}",
                               message=f"Saved server '{name}'.")
    return page.render("server_form.html", 422, editing=editing, values=values, errors=errors,
                       other=other, name=name, paste="", paste_error=None)


async def paste(page: Page) -> Response:
    content = page.field("content")
    if page.viewer.principal.servers is not None:
        return page.ui.error(page.request, page.viewer, 403, "Importing a config needs a "
                             "token without a 'servers' restriction.")
    try:
        report = await servers.import_servers(page.ctx, page.actor, content,
                                              replace_existing=page.field("replace") == "on")
    except ConfigError as exc:
        return page.render("server_form.html", 422, editing=None, values=form_of({}),
                           errors={}, other=[], name="", paste=content,
                           paste_error=str(exc))
    base = str(page.request.scope.get("root_path", ""))
    return page.render("done.html", report=report, back=base + "/",
                       message="Imported the pasted servers.")


def routes(ui: Ui) -> list[Route]:
    return [
        Route("/servers/{name}/action", ui.page(act, scope="admin", mutate=True),
              methods=["POST"]),
        Route("/add", ui.page(new_form, scope="admin"), methods=["GET"]),
        Route("/add", ui.page(save, scope="admin", mutate=True),
              methods=["POST"]),
        Route("/import", ui.page(paste, scope="admin", mutate=True),
              methods=["POST"]),
        Route("/servers/{name}/edit", ui.page(edit_form, scope="admin"), methods=["GET"]),
        Route("/servers/{name}/edit", ui.page(save, scope="admin", mutate=True),
              methods=["POST"]),
    ]
