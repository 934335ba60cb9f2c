"""A static token holding a character that is not printable ASCII is refused when the
config is loaded, and by a reload (the running config kept), naming its entry, never
the token (security review, session 25).

Such a token loaded, and could not authenticate: a host sends it in UTF-8, the gateway
reads the header as latin-1 and takes the digest of its UTF-8 (a token ending in a line
break from a file read into ``${VAR}``, alike: HTTP cannot carry it).  Over real HTTP
on 127.0.0.1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx2
import pytest

from fast_mcp_gateway.config.loader import load_config
from fast_mcp_gateway.config.settings import GatewaySettings
from fast_mcp_gateway.errors import ConfigError
from fast_mcp_gateway.gateway import Gateway
from tests.fixtures import serve_http

pytestmark = pytest.mark.anyio

OPS = "mgw_ascii-ops-6c1f0e7b9d2a"
ACCENTED = "mgw_tökén-5b8e2c4a7f10"
RULE = "holds a character that is not printable ASCII"


def _file(path: Path, *entries: str) -> Path:
    path.write_text("gateway:\n  auth:\n    tokens:\n"
                    + "".join(f"      - {entry}\n" for entry in entries) + "servers: {}\n")
    return path


@pytest.mark.parametrize(("token", "environ"), [
    (ACCENTED, {}),
    ("${GW_T}", {"GW_T": ACCENTED}),
    ("${GW_T}", {"GW_T": "mgw_from-a-file-0123456789\n"}),
    ("${GW_T}", {"GW_T": "mgw_tab\there-0123456789"}),
])
def test_a_token_that_is_not_printable_ascii_is_refused_at_load(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, token: str,
        environ: dict[str, str]) -> None:
    caplog.set_level(logging.WARNING)
    path = _file(tmp_path / "servers.yaml", f"{{name: ops, token: '{OPS}', scopes: [admin]}}",
                 f"{{name: bob, token: '{token}', scopes: [tools]}}")
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ=environ)
    said = str(refused.value)
    assert "gateway.auth.tokens[1]" in said and "the token of 'bob'" in said, said
    assert RULE in said and "tokens must be printable ASCII" in said, said
    assert "'mcp-gateway token new'" in said
    secret = environ.get("GW_T", token)
    for text in [said, *(r.getMessage() for r in caplog.records)]:
        assert secret not in text and secret.strip() not in text
    # No sha256 line is offered for it (that digest could never match either).
    assert not any("'bob'" in r.getMessage() and "sha256" in r.getMessage()
                   for r in caplog.records)


async def test_a_reload_bringing_one_is_refused_and_the_running_tokens_kept(
        tmp_path: Path) -> None:
    path = _file(tmp_path / "servers.yaml", f"{{name: ops, token: '{OPS}', scopes: [admin]}}")
    gateway = Gateway.from_file(path, GatewaySettings(config=path, db=None))
    async with serve_http(gateway.http_app("http")) as base, \
            httpx2.AsyncClient(base_url=base, timeout=30) as http:
        _file(path, f"{{name: ops, token: '{OPS}', scopes: [admin]}}",
              f"{{name: bob, token: '{ACCENTED}', scopes: [tools]}}")
        report = await gateway.reload_config()
        assert report.error is not None and RULE in report.error, report
        assert "the token of 'bob'" in report.error and ACCENTED not in report.error
        kept = await http.get("/api/v1/servers", headers={"Authorization": f"Bearer {OPS}"})
        assert kept.status_code == 200, kept.text
        # What a host sends (UTF-8) was never taken: the entry protects nothing.
        sent = await http.get("/api/v1/servers", headers=[
            (b"Authorization", b"Bearer " + ACCENTED.encode())])
        assert sent.status_code == 401
