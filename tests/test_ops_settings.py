"""Every ``MCP_GATEWAY_*`` setting given a bad value, as an operator's environment or
a deployment's empty ``${VAR}`` gives it: the one line names the variable and what it
takes -- a number's whole range (pydantic's words gave one bound, or none: "unable to
parse string as a number"), a boolean's spellings, a list's two forms -- and a value
that was taken and went wrong later (an empty store path, a path without its slash, a
public URL that is none) is refused at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from fast_mcp_gateway.cli.main import main


@pytest.mark.parametrize(("name", "value", "said"), [
    ("STARTUP_WAIT", "x", "must be a number at least 0 and at most 3600 (got 'x')"),
    ("SESSION_IDLE_TIMEOUT", "0",
     "must be a number greater than 0 and at most 604800 (got '0')"),
    ("PORT", "abc", "must be a whole number at least 0 and at most 65535 (got 'abc')"),
    ("STARTUP_CONCURRENCY", "0",
     "must be a whole number at least 1 and at most 256 (got '0')"),
    ("RETENTION_ROWS", "5", "must be a whole number at least 1000 (got '5')"),
    ("RECORD_CALLS", "maybe", "must be true or false (also 1/0, yes/no, on/off) "
                              "(got 'maybe')"),
    ("HTTP_EXPRESS_LANE", "2", "must be true or false (also 1/0, yes/no, on/off) "
                               "(got '2')"),
    ("ALLOWED_HOSTS", "[a.example", "is neither comma-separated names nor a JSON list of "
                                    "strings (Expecting value: line 1 column 2 (char 1)) "
                                    "(got '[a.example')"),
    ("ALLOWED_ORIGINS", "https://app.example.com/app",
     "'https://app.example.com/app' has a path, query or fragment ('/app'): an origin is "
     "scheme://host[:port] only, as browsers send it in the Origin header; write "
     "'https://app.example.com' (got 'https://app.example.com/app')"),
    ("ALLOWED_ORIGINS", "localhost:3000",
     "'localhost:3000' is not an origin: write scheme://host[:port], e.g. "
     "https://app.example.com or http://localhost:3000 (got 'localhost:3000')"),
    ("ALLOWED_ORIGINS", "null",
     "'null' is the Origin of sandboxed frames and local files, which any page can send: "
     "it cannot be allowed; list the origins of the pages that call the gateway (e.g. "
     "https://app.example.com or http://localhost:3000) (got 'null')"),
    ("ALLOWED_ORIGINS", "https://straße.example",
     "'https://straße.example' holds U+00DF, which browsers and Python's IDNA encode "
     "differently: write its host in the ASCII (xn--) form browsers send in the Origin "
     "header (location.origin in the browser's console on that page shows it) (got "
     "'https://straße.example')"),
    ("ALLOWED_ORIGINS", "https://ᏣᎳᎩ.example",
     "'https://ᏣᎳᎩ.example' has the label 'ꮳꮃꭹ', whose IDNA (ASCII) form cannot be told "
     "here as browsers tell it: write its host in the ASCII (xn--) form browsers send in "
     "the Origin header (location.origin in the browser's console on that page shows it) "
     "(got 'https://ᏣᎳᎩ.example')"),
    ("ALLOWED_HOSTS", "https://gw.example.com:8443/",
     "'https://gw.example.com:8443/' is not a host: an allowed host is host[:port] as "
     "browsers send it in the Host header, e.g. gw.example.com or localhost:8765; write "
     "'gw.example.com:8443' (got 'https://gw.example.com:8443/')"),
    ("PATH", "mcp", "must be a URL path starting with /, e.g. /mcp (got 'mcp')"),
    ("PUBLIC_URL", "mcp.example.com", "must be the http:// or https:// URL hosts reach the "
                                      "gateway at, e.g. https://mcp.example.com (got "
                                      "'mcp.example.com')"),
    ("DB", "", "is empty; give a SQLite file path or a postgresql:// URL, or unset it for "
               "the default store (or serve --no-db for none)"),
    ("HOST", "", "is empty; give the address to listen on, e.g. 127.0.0.1, or unset it "
                 "(got '')"),
    ("SPOOL_DIR", " ", "is empty; give a folder, or unset it for the default (got ' ')"),
    ("LOG_FORMAT", "xml", "must be 'text' or 'json' (got 'xml')"),
])
def test_a_bad_setting_names_the_variable_and_what_it_takes(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        name: str, value: str, said: str) -> None:
    monkeypatch.setenv(f"MCP_GATEWAY_{name}", value)
    assert main(["serve", "--transport", "http", "--config", "/nonexistent.yaml"]) == 2
    assert capsys.readouterr().err == f"mcp-gateway: MCP_GATEWAY_{name}: {said}\n"


@pytest.mark.parametrize("command", ["logs", "stats"])
def test_a_bad_since_is_said_before_the_store_is_looked_for(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    """``mcp-gateway logs --since 5x`` on a machine without the default store said "no
    store at ..." and nothing of the typo."""
    assert main([command, "--since", "5x", "--db", str(tmp_path / "none.db")]) == 2
    assert capsys.readouterr().err == (
        "mcp-gateway: --since '5x': use a number and s, m, h or d (e.g. 10m)\n")


def test_allowed_origins_are_kept_as_browsers_send_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Scheme and host in lower case, a default port and a trailing slash left out, as in
    a browser's ``Origin`` header; an origin written twice is kept once."""
    from fast_mcp_gateway.config.settings import GatewaySettings

    monkeypatch.setenv("MCP_GATEWAY_ALLOWED_ORIGINS", "HTTPS://App.Example.com:443/, "
                       "http://localhost:80, http://[::1]:3000/, https://app.example.com, "
                       "https://*.example.com, http://127.0.0.1:*")
    assert GatewaySettings().allowed_origins == [
        "https://app.example.com", "http://localhost", "http://[::1]:3000",
        "https://*.example.com", "http://127.0.0.1:*"]


def test_unicode_origins_are_kept_in_the_ascii_form_browsers_send(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A browser on ``https://bücher.example`` sends ``Origin:
    https://xn--bcher-kva.example`` (IDNA): the entry was kept in Unicode and never
    matched it."""
    from fast_mcp_gateway.config.settings import GatewaySettings

    monkeypatch.setenv("MCP_GATEWAY_ALLOWED_ORIGINS", "https://Bücher.example:443/, "
                       "http://例え.jp:3000, https://*.bücher.example, "
                       "https://xn--bcher-kva.example, https://ｂüｃｈｅｒ。example")
    assert GatewaySettings().allowed_origins == [
        "https://xn--bcher-kva.example", "http://xn--r8jz45g.jp:3000",
        "https://*.xn--bcher-kva.example"]


def test_unicode_hosts_are_kept_in_the_ascii_form_browsers_send(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fast_mcp_gateway.config.settings import GatewaySettings

    monkeypatch.setenv("MCP_GATEWAY_ALLOWED_HOSTS", "bücher.example:8443, *.Bücher.example, "
                       "gw.example, localhost:*")
    assert GatewaySettings().allowed_hosts == [
        "xn--bcher-kva.example:8443", "*.xn--bcher-kva.example", "gw.example", "localhost:*"]


@pytest.mark.parametrize("entry", ["https://ᏣᎳᎩ.example", "https://\u13a0.example",
                                   "https://⒈.example", "https://bü cher.example"])
def test_a_unicode_host_python_cannot_encode_as_browsers_do_is_refused(
        monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    """Python's IDNA codec maps with Unicode 3.2's tables but today's lower case: for
    Cherokee (lower case since Unicode 8, which browsers fold to upper case) it gave
    another name than the browser's (``ᏣᎳᎩ``: ``xn--tz9ata7l``, Chromium's
    ``xn--f9dt7l``), an entry that never matched; ``⒈`` maps to ``1.`` (``1..example``),
    a space stayed in the name.  Each is refused at start, saying to write the xn--
    form, for origins and hosts alike."""
    from pydantic import ValidationError

    from fast_mcp_gateway.config.settings import GatewaySettings

    monkeypatch.setenv("MCP_GATEWAY_ALLOWED_ORIGINS", entry)
    with pytest.raises(ValidationError, match="write its host in the ASCII"):
        GatewaySettings()
    monkeypatch.delenv("MCP_GATEWAY_ALLOWED_ORIGINS")
    monkeypatch.setenv("MCP_GATEWAY_ALLOWED_HOSTS", entry.removeprefix("https://"))
    with pytest.raises(ValidationError, match="write its host in the ASCII"):
        GatewaySettings()


def test_unicode_origins_are_encoded_as_chromium_encodes_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What Chromium 1xx's ``new URL(u).origin`` gives for each (UTS #46): scripts whose
    case maps alike in Unicode 3.2 and today (Georgian Mtavruli, dotted I, a titlecase
    digraph, fullwidth forms, symbols) are kept as the browser sends them."""
    from fast_mcp_gateway.config.settings import GatewaySettings

    monkeypatch.setenv("MCP_GATEWAY_ALLOWED_ORIGINS", ", ".join([
        "https://ᲠᲔᲡᲞᲣᲑᲚᲘᲙᲐ.ge", "https://İstanbul.example", "https://ǅemal.example",
        "https://\uff21\uff22\uff23\u3002\uff43\uff4f\uff4d", "https://❤.ws", "https://exa\u00admple.com",
        "https://Ελληνικά.gr", "https://℡.example"]))
    assert GatewaySettings().allowed_origins == [
        "https://xn--lodbirfe0aokv.ge", "https://xn--istanbul-o0e.example",
        "https://xn--demal-uib.example", "https://abc.com", "https://xn--qei.ws",
        "https://example.com", "https://xn--hxargifdar.gr", "https://tel.example"]
