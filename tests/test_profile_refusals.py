"""A tool the caller's *profile* leaves out is answered with where it may use it: it read
"server 'alpha' has no tool 'wipe'", as if it did not exist.  Profiles are curation, not
authorization (a caller picks its profile by the path it connects to; ``/mcp`` lists it
every tool its token allows), so this tells it nothing it could not list; what its
token keeps from it (servers outside the token's ``servers``, profiles it may not see)
stays an unknown name, never named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from tests.fixtures import alpha_server, beta_server, make_gateway, memory_entry
from tests.test_mcp_auth import ALICE, OPS, ready, serving
from tests.test_profiles import AUTH_TOKENS

pytestmark = pytest.mark.anyio

PROFILES = {
    "coding": {"servers": ["notes", "alpha"], "tools": {"exclude": ["alpha_wipe"]}},
    "finder": {"exposure": "search"},
    "alphas": {"servers": ["alpha"]},        # alice (notes, beta) may not see it
    "lean": {"tools": {"include": ["notes_*"]}},
}


def _gateway(base: str, db: Path) -> Any:
    return make_gateway(
        {"alpha": memory_entry("alpha"), "beta": memory_entry("beta"),
         "notes": memory_entry("notes")},
        {"alpha": alpha_server(), "beta": beta_server(), "notes": beta_server()},
        options={"profiles": PROFILES, "auth": {"tokens": AUTH_TOKENS}}, public_url=base,
        db=db)   # route rules live in the store


async def _refusal(host: Client[Any], tool: str) -> str:
    result = await host.call_tool(tool, {"a": 1, "b": 2}, raise_on_error=False)
    assert result.is_error
    return str(result.content[0].text)  # type: ignore[union-attr]


async def test_a_tool_left_out_by_the_profile_says_where_it_is(tmp_path: Path) -> None:
    async with serving(lambda base: _gateway(base, tmp_path / "g.db")) as (gateway, base):
        await ready(gateway, "alpha", "beta", "notes")
        async with Client(f"{base}/mcp/p/coding", auth=OPS) as ops:
            assert await _refusal(ops, "alpha_wipe") == (
                "Unknown tool: 'alpha_wipe': tool 'wipe' of server 'alpha' is not in this "
                "profile: this endpoint serves profile 'coding', which leaves it out; profile "
                "'alphas' (an endpoint ending /p/alphas), profile 'finder' (an endpoint "
                "ending /p/finder) or the gateway's endpoint without /p/coding has it: "
                "connect there")
            # A server the profile leaves out, the token allows: the same.
            assert "tool 'add' of server 'beta' is not in this profile" in await _refusal(
                ops, "beta_add")
            # A prompt of a server the profile leaves out: the same.
            with pytest.raises(MCPError, match="prompt 'greet' of server 'beta' is not in "
                                               "this profile: this endpoint serves"):
                await ops.get_prompt("beta_greet", {"name": "x"})
            # A name nothing has is answered as before.
            assert "not in this profile" not in await _refusal(ops, "alpha_wiped")
        async with Client(f"{base}/mcp/p/coding", auth=ALICE) as alice:  # notes, beta
            told = await _refusal(alice, "beta_add")
            assert "tool 'add' of server 'beta' is not in this profile" in told, told
            # 'alphas' shows alpha only: a profile alice may not see is never named.
            assert "alphas" not in told and "profile 'finder'" in told, told
            # alpha is outside her token's servers: authorization, an unknown name.
            for name in ("alpha_add", "alpha_wipe"):
                refused = await _refusal(alice, name)
                assert refused.startswith(f"Unknown tool: '{name}'"), refused
                assert "profile" not in refused and "alpha" not in refused.replace(
                    f"'{name}'", ""), refused
        # A route rule sending beta_add to alpha, outside alice's servers: authorization
        # again, so the profile is not what keeps it from her, and nothing is said of it.
        async with Client(f"{base}/mcp", auth=OPS) as admin:
            made = await admin.call_tool("gateway_add_route", {
                "pattern": "beta_add", "target": "alpha"})
            assert not made.is_error, made.content
        async with Client(f"{base}/mcp/p/coding", auth=ALICE) as alice:
            refused = await _refusal(alice, "beta_add")
            assert refused.startswith("Unknown tool: 'beta_add'"), refused
            assert "profile" not in refused and "alpha" not in refused, refused
        async with Client(f"{base}/mcp/p/lean", auth=OPS) as lean:
            assert not (await lean.call_tool("notes_add", {"a": 1, "b": 2})).is_error
            told = await _refusal(lean, "alpha_add")
            assert told.endswith("profile 'alphas' (an endpoint ending /p/alphas), profile "
                                 "'coding' (an endpoint ending /p/coding), profile 'finder' "
                                 "(an endpoint ending /p/finder) or the gateway's endpoint "
                                 "without /p/lean has it: connect there"), told
