"""``mcp-gateway token new``: a fresh bearer token, shown once, and its config entry."""

from __future__ import annotations

import argparse
import json
import secrets
import sys

from pydantic import ValidationError

from fast_mcp_gateway.config.auth import TokenEntry, token_digest

PREFIX = "mgw_"  # makes a leaked token recognisable to secret scanners


def new_token(args: argparse.Namespace) -> int:
    token = PREFIX + secrets.token_urlsafe(32)
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    servers = None if args.servers is None else [
        s.strip() for s in args.servers.split(",") if s.strip()]
    if servers == []:
        return _refuse("--servers: give at least one server name (comma-separated), or "
                       "leave --servers out to let the token reach every server")
    try:
        entry = TokenEntry.model_validate({"name": args.name, "sha256": token_digest(token),
                                           "scopes": scopes, "servers": servers})
    except ValidationError as exc:
        # Each field's own message, under the option that gave it (never pydantic's text).
        problems = "; ".join(
            f"--{e['loc'][0] if e['loc'] else 'name'}: "
            + str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        return _refuse(problems)
    lines = [
        "# The token (shown once; give it to its holder, keep it in a secret store):",
        f"#   {token}",
        "# Paste under gateway.auth.tokens in servers.yaml, indented as that list's "
        "other entries:",
        f"- name: {entry.name}",
        f"  sha256: {entry.digest}",
        f"  scopes: [{', '.join(entry.scopes)}]",
    ]
    if entry.servers is not None:
        lines.append(f"  servers: [{', '.join(entry.servers)}]")
    # A Claude-Desktop config is JSON: the YAML lines pasted into it broke the file.
    same = {"name": entry.name, "sha256": entry.digest, "scopes": list(entry.scopes),
            **({"servers": list(entry.servers)} if entry.servers is not None else {})}
    lines.append("# In a JSON config (an mcpServers file), the same entry in "
                 f'"gateway": {{"auth": {{"tokens": [...]}}}}: {json.dumps(same)}')
    print("\n".join(lines))
    return 0


def _refuse(problem: str) -> int:
    print(f"mcp-gateway token new: {problem}", file=sys.stderr)
    return 2
