"""The REST API's own models: request bodies, query parameters, and the results that
admin operations return as plain dicts.

Everything else the API returns is an ``admin.models`` model, shared with the MCP
tools.  Constraints match the ``gateway_*`` tools' arguments (same bounds, same
descriptions), so both transports accept exactly the same inputs.  These models feed
validation and the OpenAPI document alike.

Each is built (pydantic's validator and serializer) on its first use
(``defer_build``): by the first REST request, or the OpenAPI document, that needs it.
A gateway nobody calls REST on never builds them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from fast_mcp_gateway.admin.models import State
from fast_mcp_gateway.config.names import MAX_SERVER_NAME, NEW_NAME_CHARS
from fast_mcp_gateway.config.schema import STORE_INT_MAX, RoutePriority
from fast_mcp_gateway.config.settings import MAX_INSTANCE_ID
from fast_mcp_gateway.store.base import ISSUED_CURSOR, NOT_ISSUED

Limit = Annotated[int, Field(ge=1, le=500, description="page size")]
Replica = Annotated[int | None, Field(ge=0, description="replica index (default: the first "
                                                         "ready one)")]
ServerFilter = Annotated[str | None, Field(description="only this server")]
BeforeId = Annotated[int | None, Field(ge=1, le=STORE_INT_MAX,
                                       description="`next_before_id` of a previous page")]
CURSOR = ISSUED_CURSOR  # what ``store.base.invocation_cursor`` issues
ConfigBody = Annotated[dict[str, Any], Field(
    description="settings as in servers.yaml, e.g. {\"command\": \"uvx\", \"args\": "
                "[\"mcp-server-time\"]} or {\"url\": \"http://127.0.0.1:9000/mcp\"}; "
                "use ${VAR} for secrets")]


class _Model(BaseModel):
    model_config = ConfigDict(defer_build=True)


class _In(_Model):
    model_config = ConfigDict(extra="forbid")


# -- request bodies ------------------------------------------------------------------


class ServerCreate(_In):
    # The limit is documented here and enforced by the operation, whose refusal names
    # the name's length and why (a generic "at most N characters" said neither).
    name: str = Field(min_length=1, description=f"the new server's name: {NEW_NAME_CHARS}",
                      json_schema_extra={"maxLength": MAX_SERVER_NAME})
    config: ConfigBody


class ServerUpdate(_In):
    config: ConfigBody


class PinApprovalIn(_In):
    server: str = Field(min_length=1, description="the server whose findings to approve")
    names: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None, max_length=10_000,
        description="upstream names to approve (default: all of the server's findings)")


class RouteIn(_In):
    pattern: str = Field(min_length=1, description="an exposed tool name, prefix or wildcard "
                                                   "such as 'search_*'")
    target: str = Field(min_length=1, description="the server to send matching calls to")
    match: Literal["exact", "prefix", "wildcard"] = "exact"
    priority: RoutePriority = 0


class RouteUpdate(RouteIn):
    """A rule's new settings; a rule as ``GET /routes`` lists it is accepted back."""

    id: int | SkipJsonSchema[None] = Field(
        default=None, description="as GET lists it: must be the id in the path, if given")
    created_at: float | None = Field(
        default=None, description="as GET lists it: kept as stored (not changed)")


class CallToolIn(_In):
    # The MCP tool (gateway_call_server_tool) calls the server 'name'; REST says
    # 'server' everywhere else: either is accepted here, not both (which the document
    # can say), and not null (left out is how to not give one).
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["server"]}, {"required": ["name"]}]})

    server: str | SkipJsonSchema[None] = Field(
        default=None, min_length=1, description="the server's name (or give it as 'name')")
    name: str | SkipJsonSchema[None] = Field(
        default=None, min_length=1, description="the same as 'server' (the parameter's name "
                                                "in the gateway_call_server_tool MCP tool)")
    tool: str = Field(min_length=1, description="the tool's original name on that server")
    arguments: dict[str, Any] | None = None
    replica: Replica = None

    @field_validator("server", "name", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("give the server's name as a string, or leave the field out")
        return value

    @model_validator(mode="after")
    def _one_server(self) -> CallToolIn:
        if self.server is None and self.name is None:
            raise ValueError("give the server's name as 'server' (or 'name')")
        if self.server is not None and self.name is not None:
            raise ValueError("give the server's name once, as 'server' or as 'name' "
                             "(not both)")
        return self

    @property
    def target(self) -> str:
        """The server to call (``server`` or ``name``)."""
        return self.server or self.name or ""


# -- query parameters -------------------------------------------------------------------


class _Query(_Model):
    """An endpoint's query parameters.  An unknown one is refused (422 naming it and the
    one meant): ignored, a typo such as ``?sever=x`` answered unfiltered data.  Names
    starting with ``_`` (cache busters such as ``_=1700000000``) are left out before
    validation (``endpoints._query``)."""

    model_config = ConfigDict(extra="forbid")


class NoQuery(_Query):
    """An endpoint that takes no query parameters: any is refused, as an unknown one of
    another endpoint is (``GET /servers?server=x`` listed every server, unfiltered)."""


class ServersQuery(_Query):
    """As ``gateway_list_servers`` narrows (``admin.listing``), in full by default."""

    server: Annotated[str | None, Field(
        description="only these servers: exact names, comma-separated")] = None
    state: Annotated[State | None, Field(description="only servers in this state")] = None
    detail: Annotated[bool, Field(description=(
        "false: each entry without protocol_reason and the fields at their default "
        "(null, 0, false, {}, breaker closed, weight 1, protocol auto, balance "
        "round_robin, isolation shared)"))] = True

    def names(self) -> list[str] | None:
        return None if self.server is None else [
            n.strip() for n in self.server.split(",") if n.strip()] or None


class DetailQuery(_Query):
    stderr_lines: Annotated[int, Field(ge=0, le=1000)] = 50
    replica: Replica = None


class InvocationsQuery(_Query):
    server: ServerFilter = None
    tool: Annotated[str | None, Field(description="only this exposed name")] = None
    status: Literal["success", "error", "timeout", "rejected", "cancelled"] | None = None
    since_minutes: Annotated[float | None, Field(gt=0, le=60 * 24 * 365)] = None
    limit: Limit = 20
    cursor: Annotated[str | None, Field(
        description="`next_cursor` of a previous page (empty: the first page)",
        json_schema_extra={"pattern": CURSOR.pattern})] = None
    oldest_first: bool = False
    instance: Annotated[str | None, Field(
        max_length=MAX_INSTANCE_ID,
        description="only the calls this gateway served (its `instance_id`: gateways "
                    "sharing a store)")] = None

    @field_validator("cursor")
    @classmethod
    def _issued_cursor(cls, value: str | None) -> str | None:
        if not value:
            return None  # `?cursor=` is the first page, as the MCP tool's "" is
        if not CURSOR.fullmatch(value):
            raise ValueError(NOT_ISSUED)
        return value


class RoutePath(BaseModel):
    """The ``{id}`` of ``/routes/{id}``."""

    id: int = Field(ge=1, le=STORE_INT_MAX, description="the rule's id, as GET /routes lists it")


class AuditQuery(_Query):
    limit: Limit = 50
    before_id: BeforeId = None


class HealthQuery(_Query):
    server: ServerFilter = None
    limit: Limit = 50
    before_id: BeforeId = None


class StatsQuery(_Query):
    since_minutes: Annotated[float, Field(gt=0, le=60 * 24 * 365)] = 60


class ListToolsQuery(_Query):
    server: str = Field(min_length=1)
    replica: Replica = None


class GetResourceQuery(_Query):
    server: str = Field(min_length=1)
    uri: str = Field(min_length=1, description="the resource's original URI on that server")
    replica: Replica = None


class PinQuery(_Query):
    server: ServerFilter = None


class HistoryQuery(_Query):
    server: ServerFilter = None
    limit: Limit = 20
    before_id: BeforeId = None


class AlertHistoryQuery(_Query):
    server: ServerFilter = None
    rule: Annotated[str | None, Field(description="only this rule")] = None
    limit: Limit = 50
    before_id: BeforeId = None


# -- results of operations that return dicts -------------------------------------------


class RouteOut(_Model):
    id: int
    pattern: str
    match: str
    target: str
    priority: int
    created_at: float | None = None


class RouteList(_Model):
    routes: list[RouteOut] = Field(description="in decision order (priority, then age)")
    store_unreachable: str | None = Field(default=None, description=(
        "null, or why the store cannot be read now: the rules listed are then those in "
        "force in this gateway (held in memory), not necessarily the stored set"))


class Deleted(_Model):
    deleted: int


class DeletedRule(_Model):
    deleted: str


class AuditPage(_Model):
    entries: list[dict[str, Any]]
    next_before_id: int | None


class HealthPage(_Model):
    records: list[dict[str, Any]]
    next_before_id: int | None


class Component(_Model):
    kind: str = Field(description="tool, resource, resource_template or prompt")
    exposed: str = Field(description="the name (or URI) hosts see")
    original: str = Field(description="its name (or URI) on the upstream")
    definition: dict[str, Any] = Field(description="the upstream's definition")


class ComponentList(_Model):
    server: str
    items: list[Component]

