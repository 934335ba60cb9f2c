"""Offline tool search for ``exposure: search``: BM25 over the exposed catalog.  Pure.

A tool is one document: its exposed name (split on ``_``, ``-``, ``.``, ``/`` and
camelCase, weighted x3), title (x2), description, and its parameters' names and
descriptions, and its server's ``description:`` (x0.5, ``SERVER_WEIGHT``).  Words are
case-folded, lightly stemmed (plurals) and a handful of common verb synonyms are
folded together (delete/remove, find/search, ...), so "remove a file" finds
``delete_file`` (and remember/recall to memory: "remember that ..." finds a ``memory``
server's tools).  Ties keep catalog order: the same query on the same catalog always
gives the same answer.

The gateway's own ``gateway_*`` tools are documents too (``own``, server
``gateway``): in search mode they are found and called through the meta-tools like
any tool, by callers with scope ``admin`` only, ranked below upstream tools that match
about as well (``OWN_WEIGHT``).

FastMCP's ``BM25SearchTransform`` is not used: it is a server-wide transform that
cannot see who calls (the admin tools must stay out of reach of callers without
scope ``admin``), its tokenizer does not split camelCase nor see titles, it has no
server filter or per-query ``k``, and ``auto`` needs the switch made per catalog
generation.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

SEARCH_TOOL, CALL_TOOL, CALL_TOOLS = "search_tools", "call_tool", "call_tools"
META_TOOL_NAMES = frozenset({SEARCH_TOOL, CALL_TOOL, CALL_TOOLS})
MAX_K = 20
OWN_SERVER = "gateway"
"""The server name search cards give the gateway's own (admin) tools."""
OWN_WEIGHT = 0.8
"""What an own tool's score counts: it ranks above an upstream tool only when it matches
25 % better.  Their documents are long, and fold several words to one term ("add" and
"new" both to ``create``: ``gateway_add_server`` holds it 5 times), so a matching upstream
tool with a longer description ranked below one ("add two numbers": ``gateway_add_server``
2.41, an upstream ``sheets_add`` of 40 terms 2.38); queries for an admin tool still find
it first ("register a new server": 4.87 against 2.76, "add a route" 5.12 against 2.76).
``tests/test_search_own_rank.py``."""

SERVER_WEIGHT = 0.5
"""What a term of a tool's server's description counts, against 1 for one of the tool's
own description (x3 its name, x2 its title): it finds a server's tools by what the
server is for, and ranks them below a tool that says so itself."""

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script ('météo', 'погода')
_STOP = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from",
    "how", "i", "in", "into", "is", "it", "me", "my", "of", "on", "or", "that", "the",
    "this", "to", "what", "which", "with", "you", "your",
))
# Verbs that mean the same to a user looking for a tool: folded to the first.
_SYNONYMS = {
    "remove": "delete", "erase": "delete", "destroy": "delete", "drop": "delete",
    "find": "search", "lookup": "search", "query": "search",
    "make": "create", "new": "create", "add": "create",
    "modify": "update", "edit": "update", "change": "update",
    "fetch": "get", "retrieve": "get", "read": "get", "show": "get", "view": "get",
    "enumerate": "list", "directory": "dir", "folder": "dir",
    "message": "msg", "messages": "msg", "repo": "repository", "repos": "repository",
    "pr": "pull", "prs": "pull",
    # What a user asks a memory for ("remember that ...") is in no memory tool's
    # words but its namespace: a knowledge-graph server's tools say "entities" and
    # "observations", and "remember" found only a form filler's "Remember Me".
    "remember": "memory", "memorize": "memory", "memorise": "memory",
    "recall": "memory",
}


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Search terms of ``text``: names split into parts, case-folded, stemmed."""
    out: list[str] = []
    for raw in _WORD.findall(_CAMEL.sub(" ", text)):
        word = raw.lower()
        if word in _STOP:
            continue
        word = _SYNONYMS.get(word, word)
        word = _SYNONYMS.get(_stem(word), _stem(word))
        out.append(word)
    return out


@dataclass(frozen=True, slots=True)
class SearchDoc:
    """What search knows of one exposed tool."""

    name: str
    server: str
    title: str | None
    description: str | None
    input_schema: dict[str, Any]
    own: bool = False
    """One of the gateway's own tools (``gateway_*``, server ``OWN_SERVER``): found by
    callers with scope ``admin`` only, whichever servers they may see."""
    original: str | None = None
    """The tool's name on its server (None: the gateway's own): the same server started
    under several names offers the same tool under each (``same_tool``)."""
    server_description: str | None = None
    """Its server's ``description:`` (servers.yaml): what the operator says the server
    is for, in words no tool may use ("save a note" and a memory server's
    ``create_entities``); its terms count ``SERVER_WEIGHT`` each (``weights``)."""

    def same_tool(self) -> tuple[Any, ...] | None:
        """What a copy of this tool on another server has alike (None: never folded)."""
        if self.original is None:
            return None
        return (self.original, self.title, self.description,
                json.dumps(self.input_schema, sort_keys=True, default=str))

    def terms(self) -> list[str]:
        words = tokenize(self.name) * 3 + tokenize(self.title or "") * 2
        words += tokenize(self.description or "")
        properties = self.input_schema.get("properties")
        if isinstance(properties, dict):
            for param, spec in properties.items():
                words += tokenize(str(param))
                if isinstance(spec, dict) and isinstance(spec.get("description"), str):
                    words += tokenize(spec["description"])
        return words

    def weights(self, terms: Counter[str] | None = None) -> dict[str, float]:
        """Each term's weight in the document: ``terms`` counted (given: as counted
        already), and its server's description's terms ``SERVER_WEIGHT`` each (below the
        tool's own words; not in the document's length, ``SearchIndex``)."""
        weights: dict[str, float] = dict(Counter(self.terms()) if terms is None else terms)
        for term in tokenize(self.server_description or ""):
            weights[term] = weights.get(term, 0.0) + SERVER_WEIGHT
        return weights

    def card(self, copies: Sequence[SearchDoc] = ()) -> dict[str, Any]:
        """The compact form a search returns: enough to call the tool correctly; the
        same tool on other servers (``copies``) named in ``also_on``."""
        card: dict[str, Any] = {"name": self.name, "server": self.server}
        if self.title:
            card["title"] = self.title
        if self.description:
            card["description"] = first_sentence(self.description)
        card["inputSchema"] = self.input_schema
        if copies:
            card["also_on"] = [{"name": c.name, "server": c.server} for c in copies]
        return card


def folded(hits: Sequence[tuple[SearchDoc, float]], k: int
           ) -> list[tuple[SearchDoc, list[SearchDoc]]]:
    """The first ``k`` distinct tools of ``hits`` (best first), each with its copies
    among them: one server started under several names (two accounts, two roots) offers
    the same tool (name, title, description, schema) under each, and each copy took a
    place and a full card: 'read a file' behind four filesystem servers answered four
    read_file cards, and 'search the web' one 9 kB schema three times."""
    out: list[tuple[SearchDoc, list[SearchDoc]]] = []
    by_key: dict[tuple[Any, ...], list[SearchDoc]] = {}
    for doc, _ in hits:
        key = doc.same_tool()
        if key is not None and (copies := by_key.get(key)) is not None:
            copies.append(doc)
            continue
        if len(out) == k:
            continue
        out.append((doc, []))
        if key is not None:
            by_key[key] = out[-1][1]
    return out


# Words that end in a period without ending the sentence ("a time zone, e.g. Europe/Paris").
_ABBREVIATIONS = frozenset((
    "e.g", "eg", "i.e", "ie", "etc", "vs", "cf", "approx", "incl", "esp", "resp", "no",
    "nos", "min", "max", "ca", "al", "mr", "mrs", "ms", "dr", "st", "jr", "sr", "inc", "ltd",
    "co", "corp", "dept", "fig", "ver", "a.k.a", "aka", "n.b", "nb", "p.s", "u.s", "u.k",
))
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_LAST_WORD = re.compile(r"([A-Za-z][A-Za-z.]*)$")


def first_sentence(text: str, limit: int = 240) -> str:
    """The description's first sentence (or line), at most ``limit`` characters.

    A period after a common abbreviation ("e.g.", "i.e.", "etc.", "vs."), after a single
    letter (an initial) or followed by a lower-case word does not end the sentence; a
    line that goes on in lower case on the next one (a wrapped docstring) is joined."""
    lines = text.strip().split("\n")
    line = lines[0].strip()
    for more in lines[1:]:
        more = more.strip()
        if not more[:1].islower() or line[-1:] in ".!?":
            break
        line = f"{line} {more}"
    sentence = line
    for match in _SENTENCE_END.finditer(line):
        end = match.start()
        if line[end] == ".":
            word = _LAST_WORD.search(line[:end])
            after = line[end + 1:].lstrip()
            if word is not None and (word.group(1).lower() in _ABBREVIATIONS
                                     or len(word.group(1)) == 1):
                continue
            if after[:1].islower():
                continue
        sentence = line[: end + 1]
        break
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


class SearchIndex:
    """BM25 (Okapi, k1=1.2, b=0.75) over ``docs``, built once per catalog generation."""

    def __init__(self, docs: Iterable[SearchDoc], k1: float = 1.2, b: float = 0.75) -> None:
        self.docs: list[SearchDoc] = list(docs)
        self._k1, self._b = k1, b
        own = [Counter(doc.terms()) for doc in self.docs]
        # A tool's length is its own words: its server's description, in every one of
        # its tools, made them all "long" (a few lines buried the mail server's
        # send_email below another's send_message for 'send an email').
        self._len = [sum(tf.values()) for tf in own]
        self._tf = [doc.weights(tf) for doc, tf in zip(self.docs, own, strict=True)]
        self._avg = (sum(self._len) / len(self._len)) if self._len else 0.0
        df: Counter[str] = Counter()
        for tf in self._tf:
            df.update(tf.keys())
        n = len(self.docs)
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def search(self, query: str, k: int = 5, server: str | None = None,
               servers: frozenset[str] | None = None, *, own: bool = False,
               skip: Callable[[str], bool] | None = None) -> list[tuple[SearchDoc, float]]:
        """The ``k`` best matches (score > 0) for ``query``, best first; only of ``server``,
        and only of the ``servers`` the caller may see (None: every one); the gateway's
        own tools only if ``own`` (the caller has scope ``admin``); none whose name
        ``skip`` picks (routed to a server outside ``servers``)."""
        terms = set(tokenize(query))
        scored: list[tuple[float, int]] = []
        for i, (doc, tf) in enumerate(zip(self.docs, self._tf, strict=True)):
            if (server is not None and doc.server != server) or (
                    not own if doc.own else servers is not None and doc.server not in servers
            ) or (skip is not None and not doc.own and skip(doc.name)):
                continue
            score = 0.0
            norm = self._k1 * (1 - self._b + self._b * self._len[i] / (self._avg or 1))
            for term in terms:
                f = tf.get(term)
                if f:
                    score += self._idf[term] * f * (self._k1 + 1) / (f + norm)
            if doc.own:
                score *= OWN_WEIGHT
            if score > 0:
                scored.append((-score, i))
        scored.sort()
        return [(self.docs[i], -s) for s, i in scored[: max(0, k)]]

    def servers(self, servers: frozenset[str] | None = None, *, own: bool = False
                ) -> set[str]:
        """The servers whose tools ``search`` would look at for such a caller."""
        return {doc.server for doc in self.docs
                if (own if doc.own else servers is None or doc.server in servers)}


def rank_of(results: Sequence[tuple[SearchDoc, float]], name: str) -> int | None:
    """1-based rank of ``name`` in ``results`` (None: not found)."""
    return next((i for i, (doc, _) in enumerate(results, 1) if doc.name == name), None)
