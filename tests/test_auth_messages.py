"""What ``gateway.auth``, ``${caller.*}`` and the token command tell a person about bad
input: plain words naming the valid values, never pydantic's own texts; warnings for a
clear token in the file and for a token naming servers the config does not have."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from fast_mcp_gateway.cli.main import _parser
from fast_mcp_gateway.config.loader import load_config
from fast_mcp_gateway.errors import ConfigError
from tests.test_cli_messages import _subcommands

CLEAR = "mgw_cleartext_in_file_0123"
DIGEST = hashlib.sha256(CLEAR.encode()).hexdigest()


def write(tmp_path: Path, auth: str, servers: str = "notes: {command: 'true'}") -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text(f"gateway:\n  auth: {{tokens: [{auth}]}}\nservers:\n  {servers}\n")
    return path


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "fast_mcp_gateway.config.auth"]


def test_a_clear_token_in_the_file_is_warned_about_by_name_never_by_value(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, f"{{name: alice, token: {CLEAR}, scopes: [tools]}}")
    config = load_config(path, environ={})
    assert config.options.auth is not None  # a warning, still loaded
    [warning] = warnings(caplog)
    assert warning.startswith("gateway.auth.tokens[0] ('alice'): the token is written in the "
                              "config file in clear")
    assert f"'sha256: {DIGEST}'" in warning and "token: ${VAR}" in warning
    assert CLEAR not in caplog.text


@pytest.mark.parametrize("token", ["'${GW_TOKEN}'", f"'sha256:{DIGEST}'"])
def test_a_variable_or_a_digest_is_no_clear_token(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, token: str) -> None:
    """``${GW_TOKEN}`` expands to the same kind of text as a clear token: only the file's
    own text tells them apart."""
    path = write(tmp_path, f"{{name: alice, token: {token}, scopes: [tools]}}")
    config = load_config(path, environ={"GW_TOKEN": CLEAR})
    assert config.options.auth is not None and config.options.auth.tokens[0].digest == DIGEST
    assert warnings(caplog) == []


def test_a_token_naming_an_unknown_server_is_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "{name: alice, token: '${T}', scopes: [tools], "
                           "servers: [notes, nots, weather]}",
                 "notes: {command: 'true'}\n  clock: {command: 'true'}")
    config = load_config(path, environ={"T": CLEAR})
    assert config.options.auth is not None
    [warning] = warnings(caplog)
    assert warning == (
        "gateway.auth: token 'alice' names servers that are not configured: 'nots' (did you "
        "mean 'notes'?), 'weather'; configured servers: clock, notes. Fix the name, unless that "
        "server is added at runtime (then this token reaches it once it is)")


def test_a_server_name_rest_cannot_address_is_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Runtime registrations refuse a name with '/'; a file that has one keeps working
    over MCP, and says why REST and the dashboard cannot reach that server."""
    path = tmp_path / "servers.yaml"
    path.write_text("servers:\n  team/notes: {command: 'true'}\n  clock: {command: 'true'}\n")
    config = load_config(path)
    assert set(config.servers) == {"team/notes", "clock"}
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                 and r.name == "fast_mcp_gateway.config.schema"]
    # Said as what it is, a warning: the server runs; "may not contain" alone read as
    # a refusal of a server that was started.
    assert ("server 'team/notes' runs (over MCP), but the REST API and the dashboard "
            "cannot address it: a server name may not contain '/'") in warning, warning
    assert "choose another name, e.g. 'team-notes'" in warning


@pytest.mark.parametrize(("scopes", "message"), [
    ("[tool]", "unknown scope 'tool' (did you mean 'tools'?); the valid scopes are tools "
               "(list and call tools) or admin (also manage the gateway; implies tools)"),
    ("[tools, root]", "unknown scope 'root'; the valid scopes are tools"),
    ("[]", "give at least one scope: tools (list and call tools) or admin"),
    ("admin", "must be a list, e.g. scopes: [admin]; the valid scopes are tools"),
])
def test_bad_scopes_are_one_plain_problem(tmp_path: Path, scopes: str, message: str) -> None:
    path = write(tmp_path, f"{{name: a, token: '${{T}}', scopes: {scopes}}}")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={"T": CLEAR})
    text = str(error.value)
    assert text.count("\n") == 0, text  # one problem, no derived second one
    assert f"field 'gateway.auth.tokens[0].scopes': {message}" in text
    assert "Tuple should" not in text and "Input should" not in text


def test_a_bad_token_name_says_which_characters_are_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "{name: 'a b', token: '${T}', scopes: [tools]}")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={"T": CLEAR})
    assert ("field 'gateway.auth.tokens[0].name': 'a b' is not a valid token name: use "
            "letters, digits and _ . @ - only (no spaces), at most 64 characters") in str(
        error.value)
    assert "pattern" not in str(error.value)


def test_a_single_server_name_is_no_list(tmp_path: Path) -> None:
    path = write(tmp_path, "{name: a, token: '${T}', scopes: [tools], servers: notes}")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={"T": CLEAR})
    assert ("field 'gateway.auth.tokens[0].servers': must be a list of server names, e.g. "
            "servers: [notes] (leave it out for every server)") in str(error.value)


def token_new(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fast_mcp_gateway", "token", "new", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "x", "--scopes", "foo"], "--scopes: unknown scope 'foo'; the valid scopes "
                                         "are tools (list and call tools) or admin"),
    (["--name", "x", "--scopes", ""], "--scopes: give at least one scope: tools"),
    (["--name", "a b"], "--name: 'a b' is not a valid token name: use letters, digits and "
                        "_ . @ - only"),
    (["--name", "x", "--servers", " , "], "--servers: give at least one server name"),
])
def test_token_new_refuses_in_plain_words(args: list[str], message: str) -> None:
    done = token_new(*args)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"mcp-gateway token new: {message}"), done.stderr
    assert "should" not in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize(("written", "guess"), [
    ("${caller.tokn}", "; did you mean ${caller.token}?"),
    ("${caller.claim.sub}", "; did you mean ${caller.claims.<name>}?"),
    ("${caller.who}", ""),
])
def test_a_caller_reference_typo_names_the_valid_forms(
        tmp_path: Path, written: str, guess: str) -> None:
    path = tmp_path / "servers.yaml"
    path.write_text("servers:\n  h:\n    url: http://127.0.0.1:9/mcp\n"
                    f"    headers: {{Authorization: 'Bearer {written}'}}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert (f"field 'headers.Authorization': '{written}' is not a caller reference{guess} "
            "The caller references are ${caller.token} (the caller's bearer token) and "
            "${caller.claims.<name>}") in str(error.value), str(error.value)


def test_commands_offer_only_the_options_they_use() -> None:
    options = {name: {o for action in command._actions for o in action.option_strings}
               for name, command in _subcommands(_parser()).items()}
    assert "--connect-timeout" not in options["servers"]
    assert "--log-level" not in options["servers"]
    assert {"--config", "--db", "--json"} <= options["servers"]
    for command in ("serve", "check"):  # these connect to upstreams and log while doing so
        assert {"--connect-timeout", "--log-level", "--config"} <= options[command]
