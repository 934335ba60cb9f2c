"""Managing servers at runtime: register, update, remove, import, export, reload.

Precedence, by server name: a runtime registration (made with these tools, kept in the
store) overrides the entry of the same name in ``servers.yaml``; a registration without
a config only carries the enabled flag (so ``gateway_disable_server`` on a file-defined
server survives restarts).  Removing a server removes its registration; a server that
is in the file is then stopped with a tombstone registration until re-added.

Every change is validated like ``servers.yaml`` (errors name the field), persisted,
audited, and takes effect live: only the servers that changed are (re)started, and the
catalog change reaches hosts as ``list_changed``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import mcp_types as types
import yaml
from fastmcp.exceptions import ToolError
from pydantic import BaseModel, Field

from fast_mcp_gateway.config.loader import load_config, parse_config, parse_config_text
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.store.base import Registration

if TYPE_CHECKING:
    from fast_mcp_gateway.gateway import Gateway

logger = logging.getLogger(__name__)
TOMBSTONE = {"removed": True}
# Tool argument types (module level: FastMCP resolves annotations in module globals).
pattern_arg = Annotated[str, Field(min_length=1, description="an exposed tool name, prefix or "
                                                             "wildcard such as 'search_*'")]
match_arg = Literal["exact", "prefix", "wildcard"]
name_arg = Annotated[str, Field(description="the server's name", min_length=1)]
config_arg = Annotated[dict[str, Any], Field(
    description="settings as in servers.yaml, e.g. {\"command\": \"uvx\", \"args\": "
                "[\"mcp-server-time\"]} or {\"url\": \"http://127.0.0.1:9000/mcp\"}; "
                "use ${VAR} for secrets")]


class ChangeReport(BaseModel):
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    restarted: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    error: str | None = None


def parse_server(name: str, raw: dict[str, Any], source: str) -> ServerConfig:
    """Validate one server's settings exactly as servers.yaml would."""
    if not isinstance(raw, dict):
        raise ConfigError.single(source, name, None, "must be a mapping of settings")
    return parse_config({"servers": {name: raw}}, source=source).servers[name]


def merge(file_servers: dict[str, ServerConfig], registrations: list[Registration]
          ) -> tuple[dict[str, ServerConfig], list[str]]:
    """The servers to run: the file's, overridden by runtime registrations (by name)."""
    servers = dict(file_servers)
    problems: list[str] = []
    for row in registrations:
        name, raw, enabled = row.name, row.config, row.enabled
        if raw == TOMBSTONE:
            servers.pop(name, None)
            continue
        try:
            server = (parse_server(name, raw, "runtime registration") if raw is not None
                      else servers.get(name))
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if server is None:
            continue
        servers[name] = server.model_copy(update={"enabled": enabled})
    return servers, problems


def _check_namespace(server: ServerConfig, others: dict[str, ServerConfig]) -> None:
    ns = server.effective_namespace
    for other in others.values():
        if other.name != server.name and ns and other.effective_namespace == ns:
            raise ConfigError.single(
                "runtime registration", server.name, "namespace",
                f"namespace '{ns}' is already used by server '{other.name}'; give one of "
                "them another 'namespace:'")


def export_servers(servers: dict[str, ServerConfig], fmt: str) -> str:
    """Servers as our YAML or as a Claude-Desktop mcpServers JSON (secrets redacted)."""
    entries = {}
    for name, server in servers.items():
        data = server.redacted()
        data.pop("name", None)
        entries[name] = data
    if fmt == "yaml":
        return str(yaml.safe_dump({"servers": entries}, sort_keys=False))
    claude: dict[str, Any] = {}
    for name, data in entries.items():
        entry: dict[str, Any] = {k: data[k] for k in ("command", "args", "env", "cwd", "url",
                                                      "headers") if k in data}
        if "url" in entry:
            entry["type"] = "sse" if servers[name].kind == "sse" else "http"
        if data.get("enabled") is False:
            entry["disabled"] = True
        claude[name] = entry
    return json.dumps({"mcpServers": claude}, indent=2)


def register_management_tools(gateway: Gateway) -> set[str]:
    """Add the server-management tools to ``gateway.server``; returns their names."""
    server = gateway.server
    changing = types.ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                     idempotent_hint=True, open_world_hint=False)
    removing = types.ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                     idempotent_hint=True, open_world_hint=False)
    read_only = types.ToolAnnotations(read_only_hint=True, idempotent_hint=True,
                                      destructive_hint=False, open_world_hint=False)

    async def register(name: str, raw: dict[str, Any], *, must_exist: bool | None
                       ) -> ChangeReport:
        store = gateway.require_store()
        exists = name in gateway.manager.services
        if must_exist is True and not exists:
            raise ToolError(f"no server named '{name}'; use gateway_add_server")
        if must_exist is False and exists:
            raise ToolError(f"server '{name}' already exists; use gateway_update_server")
        try:
            parsed = parse_server(name, raw, f"gateway_{'update' if exists else 'add'}_server")
            _check_namespace(parsed, gateway.manager_configs())
        except ConfigError as exc:
            raise ToolError(str(exc)) from exc
        await store.put_server(name, raw, parsed.enabled)
        await gateway.manager.replace_server(parsed)
        await gateway.audit("update_server" if exists else "add_server", name, raw)
        return ChangeReport(restarted=[name]) if exists else ChangeReport(added=[name])

    @server.tool(name="gateway_add_server", annotations=changing, tags={"admin"})
    async def add_server(name: name_arg, config: config_arg) -> ChangeReport:
        """Register a new upstream server; it starts now and after every restart."""
        return await register(name, config, must_exist=False)

    @server.tool(name="gateway_update_server", annotations=changing, tags={"admin"})
    async def update_server(name: name_arg, config: config_arg) -> ChangeReport:
        """Replace a server's settings (overrides servers.yaml); it restarts now."""
        return await register(name, config, must_exist=True)

    @server.tool(name="gateway_remove_server", annotations=removing, tags={"admin"})
    async def remove_server(name: name_arg) -> ChangeReport:
        """Stop a server and forget it (a servers.yaml entry stays removed until re-added)."""
        store = gateway.require_store()
        if name not in gateway.manager.services:
            raise ToolError(f"no server named '{name}'")
        if name in gateway.config.servers:
            await store.put_server(name, TOMBSTONE, False)
        else:
            await store.delete_server(name)
        await gateway.manager.remove_server(name)
        await gateway.audit("remove_server", name)
        return ChangeReport(removed=[name])

    @server.tool(name="gateway_export_servers", annotations=read_only, tags={"admin"})
    def export(format: Literal["yaml", "claude"] = "yaml") -> str:
        """The running servers as servers.yaml or as Claude-Desktop mcpServers JSON
        (credentials and ${VAR} values are shown as ***)."""
        return export_servers(gateway.manager_configs(), format)

    @server.tool(name="gateway_import_servers", annotations=changing, tags={"admin"})
    async def import_servers(
        content: Annotated[str, Field(description="servers.yaml text, or a Claude-Desktop "
                                                  "mcpServers file (JSON or YAML)")],
        replace_existing: bool = False,
    ) -> ChangeReport:
        """Register every server of a config file (ours or Claude Desktop's); existing
        names are skipped unless replace_existing."""
        try:
            parsed = parse_config_text(content, source="gateway_import_servers")
            raw = yaml.safe_load(content)
        except ConfigError as exc:
            raise ToolError(str(exc)) from exc
        entries = raw.get("mcpServers") or raw.get("servers") or {}
        report = ChangeReport()
        for name, server_config in parsed.servers.items():
            if name in gateway.manager.services and not replace_existing:
                report.unchanged.append(name)
                continue
            stored = entries[name] if "servers" in raw else server_config.model_dump(
                mode="json", exclude_defaults=True, exclude={"name", "secrets"})
            outcome = await register(name, stored, must_exist=None)
            report.added += outcome.added
            report.restarted += outcome.restarted
        return report

    @server.tool(name="gateway_reload_config", annotations=changing, tags={"admin"})
    async def reload_config() -> ChangeReport:
        """Re-read servers.yaml now: restart only the servers whose settings changed. An
        invalid file is rejected with its errors and the running config is kept."""
        return await gateway.reload_config()

    async def save_route(route_id: int | None, pattern: str, match: match_arg, target: str,
                         priority: int) -> dict[str, Any]:
        store = gateway.require_store()
        action = "add_route" if route_id is None else "update_route"
        if target not in gateway.manager.services:
            known = ", ".join(gateway.manager.services) or "none"
            raise ToolError(f"no server named '{target}' to route to (known: {known})")
        if route_id is None:
            route_id = await store.add_route(pattern, match, target, priority)
        elif not await store.update_route(route_id, pattern, match, target, priority):
            raise ToolError(f"no route #{route_id}")
        await gateway.load_routes()
        await gateway.audit(action, pattern,
                            {"id": route_id, "match": match, "target": target,
                             "priority": priority})
        return {"id": route_id, "pattern": pattern, "match": match, "target": target,
                "priority": priority}

    @server.tool(name="gateway_add_route", annotations=changing, tags={"admin"})
    async def add_route(pattern: pattern_arg, target: name_arg, match: match_arg = "exact",
                        priority: int = 0) -> dict[str, Any]:
        """Send calls of matching exposed tool names to another server (same tool name
        there). Higher priority wins; without a rule a tool goes to its own server."""
        return await save_route(None, pattern, match, target, priority)

    @server.tool(name="gateway_update_route", annotations=changing, tags={"admin"})
    async def update_route(route_id: int, pattern: pattern_arg, target: name_arg,
                           match: match_arg = "exact", priority: int = 0) -> dict[str, Any]:
        """Change a route rule."""
        return await save_route(route_id, pattern, match, target, priority)

    @server.tool(name="gateway_delete_route", annotations=removing, tags={"admin"})
    async def delete_route(route_id: int) -> dict[str, Any]:
        """Delete a route rule (its tools go back to their own servers)."""
        if not await gateway.require_store().delete_route(route_id):
            raise ToolError(f"no route #{route_id}")
        await gateway.load_routes()
        await gateway.audit("delete_route", str(route_id))
        return {"deleted": route_id}

    @server.tool(name="gateway_list_routes", annotations=read_only, tags={"admin"})
    async def list_routes() -> dict[str, Any]:
        """Route rules in decision order (priority, then age)."""
        return {"routes": [asdict(r) for r in await gateway.require_store().routes()]}

    return {"gateway_add_server", "gateway_update_server", "gateway_remove_server",
            "gateway_export_servers", "gateway_import_servers", "gateway_reload_config",
            "gateway_add_route", "gateway_update_route", "gateway_delete_route",
            "gateway_list_routes"}


async def watch_config(gateway: Gateway, interval: float, *,
                       task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                       ) -> None:
    """Reload when servers.yaml's modification time or size changes."""
    path = gateway.settings.config

    async def stamp() -> tuple[float, int] | None:
        if path is None:
            return None
        try:
            st = await anyio.Path(path).stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    # The baseline is taken before reporting started: an edit made right after start-up
    # must count as a change.
    last = await stamp()
    task_status.started()
    if path is None or interval <= 0:
        return
    while True:
        await anyio.sleep(interval)
        now = await stamp()
        if now is not None and now != last:
            last = now
            report = await gateway.reload_config()
            if report.error:
                logger.error("config reload rejected, keeping the running config: %s",
                             report.error)
            else:
                logger.info("config reloaded: %s", report.model_dump(exclude={"error"}))


def load_file(path: Any) -> dict[str, ServerConfig]:
    return dict(load_config(path).servers)
