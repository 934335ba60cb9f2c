"""Curation: what a server's ``tools:`` / ``resources:`` / ``prompts:`` rules make of its
catalog.  Pure; the manager applies it to every server before names are allocated,
so listing, lookups, both call paths and the admin detail all read one result.

* ``include`` (when given) keeps only matching originals, then ``exclude`` hides
  matches; resource globs apply to a resource's URI and to a template's uriTemplate,
  and ``resources.exclude`` also refuses a concrete URI read through a template.
* ``rename`` changes the name the namespace is put on (``github`` + ``find_issues``
  -> ``github_find_issues``); upstream still gets the original.  A rename onto a name
  the server already uses is skipped and reported, never silently suffixed.
* ``override`` changes what the host sees of a tool (description, title, annotations
  merged over the upstream's); the gateway's own decisions (retries, stale results)
  keep using the upstream's annotations, and nothing of it is sent upstream.

A rule that did nothing is a ``Curated.problems`` line naming the rule and the closest
name the server has (a typo): a rename or override of a name it does not have, an
``include`` or ``exclude`` glob of tools or prompts matching none of them, an
``include`` glob of resources matching no URI or template (``resources.exclude`` also
refuses reads through templates, so matching no listed URI is not nothing).  Judged on
a catalog the server listed: an empty one (a server never reached) reports none.
``mcp-gateway check``, ``gateway_server_detail`` and the serving gateway's log
(``routing/build.BuildLog``) all say these lines.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import mcp_types as types

from fast_mcp_gateway.config.curation import Filter, Override
from fast_mcp_gateway.config.names import logged_name
from fast_mcp_gateway.config.schema import ServerConfig
from fast_mcp_gateway.upstream.model import Catalog

Kind = Literal["tool", "prompt", "resource", "resource_template"]
T = TypeVar("T")
_SECTION: dict[Kind, str] = {"tool": "tools", "prompt": "prompts", "resource": "resources",
                             "resource_template": "resources"}
KIND_LABEL: dict[Kind, str] = {"tool": "tool", "prompt": "prompt", "resource": "resource",
                               "resource_template": "resource template"}


@dataclass(frozen=True, slots=True)
class Hidden:
    """A component a rule hides: left off every list and refused by name."""

    kind: Kind
    server: str
    original: str
    rule: str                    # "tools.exclude", "resources.include", "pinning", ...
    reason: str | None = None    # the refusal, when not a curation rule's (pinning's)

    @property
    def message(self) -> str:
        """The refusal the host gets, the same on every path."""
        if self.reason is not None:
            return self.reason
        return (f"{KIND_LABEL[self.kind]} '{self.original}' of server '{self.server}' is hidden "
                f"by its '{self.rule}' rule")


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """A visible component: the name it is exposed under (before the namespace), its
    upstream original, and what the host sees of it."""

    name: str
    original: str
    item: T


@dataclass
class Curated:
    """One server's catalog after its rules, and what each rule did."""

    tools: list[Entry[types.Tool]] = field(default_factory=list)
    prompts: list[Entry[types.Prompt]] = field(default_factory=list)
    resources: list[Entry[types.Resource]] = field(default_factory=list)
    templates: list[Entry[types.ResourceTemplate]] = field(default_factory=list)
    hidden: list[Hidden] = field(default_factory=list)
    renamed: list[tuple[Kind, str, str]] = field(default_factory=list)   # kind, original, new
    overridden: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # tool, fields
    problems: list[str] = field(default_factory=list)     # rules that did nothing, and why


def task_required(tool: types.Tool) -> bool:
    """Whether ``tool`` runs only as a task (not exposed from a handshake-era session:
    ``front/unknown.TASK_REASON`` says why, in the log and to a host calling it by name;
    ``admin/status.exposed_counts`` does not count it)."""
    return tool.execution is not None and tool.execution.task_support == "required"


def hidden_by(rules: Filter, original: str, section: str) -> str | None:
    """The rule (``tools.include`` / ``tools.exclude``) that hides ``original``, if any."""
    if rules.include is not None and not any(
            fnmatch.fnmatchcase(original, g) for g in rules.include):
        return f"{section}.include"
    if any(fnmatch.fnmatchcase(original, g) for g in rules.exclude):
        return f"{section}.exclude"
    return None


def curate(server: ServerConfig, catalog: Catalog) -> Curated:
    """Apply ``server``'s rules to its ``catalog`` (upstream order is kept)."""
    out = Curated()
    known = any(catalog.counts().values())   # listed (empty: never reached)
    out.tools = _filter(out, server.name, "tool", server.tools, catalog.tools,
                        lambda t: t.name)
    out.prompts = _filter(out, server.name, "prompt", server.prompts, catalog.prompts,
                          lambda p: p.name)
    out.resources = _filter(out, server.name, "resource", server.resources,
                            catalog.resources, lambda r: str(r.uri))
    out.templates = _filter(out, server.name, "resource_template", server.resources,
                            catalog.templates, lambda t: t.uri_template)
    out.tools = _rename(out, "tool", server.tools.rename, out.tools,
                        [t.name for t in catalog.tools], known)
    out.prompts = _rename(out, "prompt", server.prompts.rename, out.prompts,
                          [p.name for p in catalog.prompts], known)
    out.tools = _override(out, server.tools.override, out.tools,
                          {t.name for t in catalog.tools}, known)
    _check_cache(out, server, catalog)
    if known:
        _check_globs(out, "tool", server.tools, [t.name for t in catalog.tools])
        _check_globs(out, "prompt", server.prompts, [p.name for p in catalog.prompts])
        _check_globs(out, "resource", server.resources,
                     [*(str(r.uri) for r in catalog.resources),
                      *(t.uri_template for t in catalog.templates)], exclude=False)
    return out


def closest(name: str, names: Sequence[str]) -> str:
    """`` (closest: 'x')``, the name in ``names`` most like ``name``, or "" (none is)."""
    return _closest(name, tuple(dict.fromkeys(names)))


@functools.lru_cache(maxsize=32)   # a few servers' problems, not every list seen
def _closest(name: str, names: tuple[str, ...]) -> str:
    # Cached: every catalog build curates every server again, and a rule that did
    # nothing stays so until its server's list or the rule changes (500 tools: ~3 ms).
    import difflib  # here, not at the top: only a rule that did nothing needs it

    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f" (closest: '{logged_name(close[0])}')" if close else ""


def _check_globs(out: Curated, kind: Kind, rules: Filter, names: list[str], *,
                 exclude: bool = True) -> None:
    """An ``include`` (or ``exclude``) glob of ``kind`` matching none of ``names``."""
    section = _SECTION[kind]
    label = "resource or template" if kind == "resource" else KIND_LABEL[kind]
    for rule, globs in (("include", rules.include or ()),
                        ("exclude", rules.exclude if exclude else ())):
        for glob in globs:
            if not any(fnmatch.fnmatchcase(n, glob) for n in names):
                out.problems.append(f"{section}.{rule}: '{glob}' matches no {label} "
                                    f"on this server{closest(glob, names)}")


def _check_cache(out: Curated, server: ServerConfig, catalog: Catalog) -> None:
    """Cache rules the upstream's annotations rule out (front/results.py never applies
    them): reported, as the config cannot know the annotations when it is loaded."""
    if not catalog.tools:
        return
    tools = {t.name: t for t in catalog.tools}
    for name in server.tools.cache:
        tool = tools.get(name)
        if tool is None:
            out.problems.append(f"tools.cache: no tool '{name}' on this server"
                                f"{closest(name, list(tools))}")
        elif name not in server.idempotent_tools and not (
                tool.annotations and (tool.annotations.read_only_hint
                                      or tool.annotations.idempotent_hint)):
            out.problems.append(
                f"tools.cache: '{name}' is not annotated readOnlyHint or idempotentHint by "
                "its server, so it is never cached (list it in idempotent_tools if repeating "
                "it is safe)")


def _filter(out: Curated, server: str, kind: Kind, rules: Filter, items: Sequence[T],
            key: Callable[[T], str]) -> list[Entry[T]]:
    kept: list[Entry[T]] = []
    for item in items:
        original = key(item)
        rule = hidden_by(rules, original, _SECTION[kind])
        if rule is None:
            kept.append(Entry(original, original, item))
        else:
            out.hidden.append(Hidden(kind, server, original, rule))
    return kept


def _rename(out: Curated, kind: Kind, rename: dict[str, str], entries: list[Entry[T]],
            all_names: list[str], known: bool) -> list[Entry[T]]:
    if not rename:
        return entries
    section = _SECTION[kind]
    visible = {e.original for e in entries}
    for original in rename:
        if original not in all_names and not known:
            continue
        if original not in all_names:
            out.problems.append(f"{section}.rename: no {KIND_LABEL[kind]} '{original}' on this "
                                f"server{closest(original, all_names)}")
        elif original not in visible:
            out.problems.append(f"{section}.rename: '{original}' is hidden, not renamed")
    # Names that stay as they are, so a rename cannot take one of them.
    kept = {e.original for e in entries if e.original not in rename}
    result: list[Entry[T]] = []
    for entry in entries:
        new = rename.get(entry.original)
        if new is None or new == entry.original:
            result.append(entry)
        elif new in kept:
            out.problems.append(f"{section}.rename: '{entry.original}' -> '{new}' skipped: the "
                                f"server already has a {KIND_LABEL[kind]} '{new}'")
            result.append(entry)
        else:
            out.renamed.append((kind, entry.original, new))
            result.append(Entry(new, entry.original, entry.item))
    return result


def _override(out: Curated, overrides: dict[str, Override], entries: list[Entry[types.Tool]],
              all_names: set[str], known: bool) -> list[Entry[types.Tool]]:
    if not overrides:
        return entries
    for original in overrides:
        if original not in all_names and known:
            out.problems.append(f"tools.override: no tool '{original}' on this server"
                                f"{closest(original, sorted(all_names))}")
    result: list[Entry[types.Tool]] = []
    for entry in entries:
        rule = overrides.get(entry.original)
        if rule is None:
            result.append(entry)
            continue
        tool = override_tool(entry.item, rule)
        out.overridden.append((entry.original, tuple(
            k for k in ("description", "title", "annotations") if getattr(rule, k) is not None)))
        result.append(Entry(entry.name, entry.original, tool))
    return result


def override_tool(tool: types.Tool, rule: Override) -> types.Tool:
    """``tool`` as the host sees it under ``rule``."""
    update: dict[str, object] = {}
    if rule.description is not None:
        update["description"] = rule.description
    if rule.title is not None:
        update["title"] = rule.title
    if rule.annotations is not None:
        merged = (tool.annotations.model_dump(by_alias=True, exclude_none=True)
                  if tool.annotations else {})
        merged.update(rule.annotations)
        update["annotations"] = types.ToolAnnotations.model_validate(merged)
    return tool.model_copy(update=update)


def read_refusal(server: ServerConfig, uri: str) -> str | None:
    """Why reading concrete ``uri`` (e.g. through a template) is refused, if it is."""
    if any(fnmatch.fnmatchcase(uri, g) for g in server.resources.exclude):
        return Hidden("resource", server.name, uri, "resources.exclude").message
    return None
