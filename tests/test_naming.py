"""Exposed-name allocation: host-safe, deterministic, collision-free (pure)."""

from __future__ import annotations

import re

from fast_mcp_gateway.routing.naming import allocate_names, allocate_uris, namespace_uri

HOST_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_plain_names_are_prefixed() -> None:
    table = allocate_names([("a", "alpha", "add"), ("b", "beta", "add")])
    assert set(table.by_exposed) == {"alpha_add", "beta_add"}
    assert table.renames == []


def test_ambiguous_underscore_join_is_resolved_not_dropped() -> None:
    table = allocate_names([("a", "a", "x_y"), ("ax", "a_x", "y")])
    assert len(table.by_exposed) == 2
    assert table.by_exposed["a_x_y"].server == "a"
    (rename,) = table.renames
    assert rename.server == "ax" and rename.exposed.startswith("a_x_y_")
    assert "collides with 'x_y' of server 'a'" in rename.reason


def test_long_names_are_shortened_stably_and_stay_unique() -> None:
    long_a = "fetch_" + "x" * 80
    long_b = "fetch_" + "x" * 79 + "y"
    entries = [("s", "server", long_a), ("s", "server", long_b)]
    first, second = allocate_names(entries), allocate_names(entries)
    assert list(first.by_exposed) == list(second.by_exposed)
    assert len(first.by_exposed) == 2
    assert all(HOST_SAFE.match(n) for n in first.by_exposed)
    assert all("shortened" in r.reason for r in first.renames)


def test_a_long_namespace_leaves_room_for_each_tools_own_name() -> None:
    # A 60-character server name ate the whole 64: each of its tools was exposed as the
    # same 55 characters of namespace and a hash, telling a host's model nothing of
    # which tool it was ('..._name_for__e66d9e78').
    ns = "a_server_with_a_really_quite_long_descriptive_name_for_tests"
    entries = [("s", ns, "echo"), ("s", ns, "crash"), ("s", ns, "read_multiple_files")]
    table = allocate_names(entries)
    assert list(table.by_exposed) == list(allocate_names(entries).by_exposed)
    for exposed, origin in table.by_exposed.items():
        assert HOST_SAFE.match(exposed), exposed
        assert exposed.startswith("a_server_with_a_really_quite_"), exposed
        assert re.fullmatch(rf".*_{origin.original}_[0-9a-f]{{8}}", exposed), exposed
    # A short namespace keeps all of itself and the head of a long tool name, as before.
    (name,) = allocate_names([("s", "srv", "z" * 80)]).by_exposed
    assert name.startswith("srv_" + "z" * 51 + "_") and len(name) == 64


def test_configurable_max_length() -> None:
    table = allocate_names([("s", "ns", "t" * 40)], max_length=32)
    (name,) = table.by_exposed
    assert len(name) == 32


def test_unicode_and_dots_become_host_safe() -> None:
    table = allocate_names([("s", "ns", "café.lookup"), ("s", "ns", "cafe_lookup"),
                            ("s", "ns", "grüße")])
    names = list(table.by_exposed)
    # The accent is dropped, not the letter (it was "ns_caf__lookup").
    assert names[0] == "ns_cafe_lookup" and names[2] == "ns_grusse"
    assert all(HOST_SAFE.match(n) for n in names) and len(set(names)) == 3
    assert "replaced" in table.renames[0].reason
    assert "collides with 'café.lookup'" in table.renames[1].reason
    assert table.renames[2].reason == "accented letters written without their accents"


def test_empty_namespace_passes_names_through_but_checks_collisions() -> None:
    table = allocate_names([("a", "", "add"), ("b", "", "add"), ("b", "", "echo")])
    assert table.by_exposed["add"].server == "a"
    assert table.by_exposed["echo"].server == "b"
    assert len(table.by_exposed) == 3


def test_reserved_names_are_never_given_to_upstreams() -> None:
    table = allocate_names([("gateway", "gateway", "list_servers")],
                           reserved=["gateway_list_servers"])
    origin = table.by_exposed["gateway_list_servers"]
    assert origin.server == "(gateway)"
    (rename,) = table.renames
    assert "of the gateway" in rename.reason


def test_uri_namespacing_with_and_without_scheme_separator() -> None:
    assert namespace_uri("data://items/{id}", "alpha") == "data://alpha/items/{id}"
    assert namespace_uri("urn:cfg", "alpha") == "urn:alpha/cfg"
    assert namespace_uri("memo://", "n") == "memo://n/"
    assert namespace_uri("data://x", "") == "data://x"


def test_uri_collisions_fall_back_to_the_server_name() -> None:
    table = allocate_uris([("a", "", "urn:cfg"), ("b", "", "urn:cfg")])
    assert table.by_exposed["urn:cfg"].server == "a"
    assert table.by_exposed["urn:b/cfg"].server == "b"
    assert table.renames[0].server == "b"

