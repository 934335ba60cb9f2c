"""Config bytes and text to plain data: the encodings, YAML and JSON of a config file.

``decode_config`` turns a file's bytes into text (a BOM picks UTF-8, UTF-16 or UTF-32,
else UTF-8; binary is refused) and ``read_document`` parses that text, YAML or JSON, with
duplicate keys refused and every parser error turned into one ``ConfigError`` line
naming the file.  Separate from ``loader`` (which validates the parsed data into a
``GatewayConfig``): reading a document is one concern with its own edge cases, and the
loader had no room left for its own.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import anyio
import yaml

from fast_mcp_gateway.config.checks import MAX_DEPTH, short
from fast_mcp_gateway.errors import ConfigError

# A config is a few KB; anything this large is the wrong file.
MAX_CONFIG_BYTES = 4 * 1024 * 1024


# ---------------------------------------------------------------------------
# Bytes and text
# ---------------------------------------------------------------------------

_BOMS = (  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def decode_config(data: bytes, source: str) -> str:
    """Config bytes as text: a BOM picks the encoding, else UTF-8; binary is refused."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding)
            except UnicodeDecodeError as exc:
                raise ConfigError.single(source, None, None, _undecodable(exc, encoding)) from None
    if b"\x00" in data:
        raise ConfigError.single(source, None, None, _BINARY)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError.single(source, None, None, _undecodable(exc, "UTF-8")) from None


_BINARY = ("is not a text file (it contains NUL bytes); a config is YAML or JSON text, saved "
           "as UTF-8")


def _undecodable(exc: UnicodeDecodeError, encoding: str) -> str:
    line = exc.object[:exc.start].count(b"\n") + 1
    return (f"is not valid {encoding} text (byte 0x{exc.object[exc.start]:02x} at line {line}); "
            "save the file as UTF-8")


# ---------------------------------------------------------------------------
# YAML and JSON
# ---------------------------------------------------------------------------

_MERGE_TAG = "tag:yaml.org,2002:merge"
_YAML11_BOOL_WORDS = frozenset({"yes", "no", "on", "off"})
"""Plain words YAML 1.1 (PyYAML) reads as booleans and YAML 1.2 as text: as keys, text."""


class _ConfigYamlLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys (instead of keeping the last) while still
    honouring ``<<:`` merge keys, whose merged keys the mapping's own keys may override."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.merged_prefix: dict[int, int] = {}

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        own = sum(1 for key, _ in node.value if key.tag != _MERGE_TAG)
        super().flatten_mapping(node)  # type: ignore[no-untyped-call]
        # Merged pairs are put in front; remember how many (a node may be flattened twice).
        self.merged_prefix[id(node)] = (self.merged_prefix.get(id(node), 0)
                                        + len(node.value) - own)


def _construct_mapping(loader: _ConfigYamlLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"expected a mapping, found {node.id}", node.start_mark)
    loader.flatten_mapping(node)
    merged = loader.merged_prefix.get(id(node), 0)
    mapping: dict[Any, Any] = {}
    own: set[Any] = set()
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if isinstance(key, bool) and key_node.style is None \
                and key_node.value.lower() in _YAML11_BOOL_WORDS:
            # Every key of a config is a name, and YAML 1.2 reads these words as text:
            # ``retry: {on: [...]}`` means the field ``on``, as a person wrote it.
            key = key_node.value
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a name, not a list or mapping", key_node.start_mark)
        if index >= merged:
            if key in own:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {short(key)}; keep only one of them",
                    key_node.start_mark)
            own.add(key)
        mapping[key] = loader.construct_object(value_node, deep=True)  # type: ignore[no-untyped-call]
    return mapping


_ConfigYamlLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


class _DuplicateJsonKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise _DuplicateJsonKey(key)
        mapping[key] = value
    return mapping


def read_document(text: str, source: str = "<config>") -> Any:
    """Parse config text, YAML or JSON, to plain data (``None`` when empty).

    JSON is YAML, but a document starting with ``{`` is read as JSON: its errors read better,
    and tab indentation (legal JSON, illegal YAML) works.
    """
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise ConfigError.single(source, None, None, _BINARY)
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError.single(source, None, None, "is too large for a config (over 4 MiB)")
    is_json = text.lstrip().startswith("{")
    try:
        if is_json:
            return json.loads(text, object_pairs_hook=_unique_pairs)
        return yaml.load(text, Loader=_ConfigYamlLoader)
    except json.JSONDecodeError as exc:
        message = _json_problem(exc)
    except _DuplicateJsonKey as exc:
        message = f"duplicate key {short(exc.key)} in a JSON object; keep only one of them"
    except yaml.YAMLError as exc:
        message = _yaml_problem(exc)
    except RecursionError:
        message = f"is nested too deeply (a config needs at most {MAX_DEPTH} levels)"
    except (ValueError, OverflowError) as exc:  # e.g. a 5000-digit number, a bad date
        problem = _one_line(str(exc))
        if "integer string conversion" in problem:
            problem = "a number has thousands of digits; no setting needs more than a few"
        message = f"invalid {'JSON' if is_json else 'YAML'}: {problem}"
    raise ConfigError.single(source, None, None, message)


def _json_problem(exc: json.JSONDecodeError) -> str:
    """The parser's words, and for what hand-edited files (a Claude Desktop config) most
    often hold, what it is: the parser says only "Expecting property name enclosed in
    double quotes" of a trailing comma, a comment or a single-quoted string."""
    text, at = exc.doc, exc.pos
    message = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    before = text[:at].rstrip()
    if before.endswith(",") and text[at:at + 1] in ("}", "]"):
        comma = len(before) - 1
        line = text.count("\n", 0, comma) + 1
        column = comma - (text.rfind("\n", 0, comma) + 1) + 1
        return (f"invalid JSON at line {line}, column {column}: a comma before "
                f"'{text[at]}' (JSON allows no trailing comma); remove it")
    if text.startswith(("//", "/*", "#"), at):
        return (f"{message}; JSON has no comments: remove it (or write the config "
                "as YAML, where '#' starts a comment)")
    if text.startswith("'", at):
        return f"{message}; JSON strings and keys take double quotes (\"), not single ones"
    return message


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"invalid YAML: {_one_line(str(exc))}"
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = exc.problem or exc.context or "syntax error"
    if exc.context and exc.problem:
        problem = f"{problem} ({exc.context})"
    if "constructor for the tag" in problem:
        problem += "; YAML tags (!!python/..., !custom) are not allowed in a config"
    if "recursive node" in problem:
        problem += "; an alias (*name) refers to the mapping or list that defines it"
    if "expected <block end>, but found '-'" in problem:
        # Typically an entry pasted at the margin, such as 'mcp-gateway token new' prints.
        problem += ("; this list item ('- ...') is indented less than the key it belongs "
                    "to: indent it, and the rest of its entry, at least as far as that key "
                    "(e.g. under 'tokens:' of gateway.auth)")
    if "'\\t'" in problem:
        problem += "; indent with spaces, not tabs"
    return f"invalid YAML{where}: {_one_line(problem)}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------
# The file as the config watcher sees it
# ---------------------------------------------------------------------------


async def file_stamp(path: Path | None) -> tuple[int, int] | None:
    """(mtime in ns, size) of the file at ``path`` (None: no path, or unreadable)."""
    if path is None:
        return None
    try:
        st = await anyio.Path(path).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


async def blank_file(path: Path) -> bool:
    """Whether the config file holds no YAML at all: nothing, blanks, comments."""
    try:
        text = (await anyio.Path(path).read_bytes()).decode("utf-8-sig", errors="replace")
    except OSError:
        return False
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())
