"""A 2026-07-28 host on the full path gets a relayed form's ``requestedSchema`` without
the nulls MCP's schema has no place for (``front/form_schemas.py``).

``FormSchemas`` put the upstream's schema back whole after the SDK's sieve, which had
left out its ``"required": null`` and ``"$schema": null`` (the dump's ``exclude_none``)
as the express lanes do (``wire.without_schema_nulls``): a strict host (the TypeScript
SDK's ``required?: string[]``) refuses the line.  The top-level ``title`` it restores
stays.  ``tests/servers/caps.py``'s ``push_nulls`` (a handshake-era upstream over
stdio, asking by push), a real gateway over real HTTP on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.fixtures import PY, SERVERS
from tests.test_declared_capabilities import FORM, http_front, post

pytestmark = pytest.mark.anyio


async def test_a_relayed_forms_schema_has_no_null_members() -> None:
    entry = {"command": PY, "args": [str(SERVERS / "caps.py")], "protocol": "legacy"}
    async with http_front(entry, False) as (http, _):
        asked = await post(http, "caps_push_nulls", FORM)
        assert asked["resultType"] == "input_required", asked
        (ask,) = asked["inputRequests"].values()
        assert ask["params"]["requestedSchema"] == {
            "type": "object", "title": "Who", "properties": {"name": {"type": "string"}}}
