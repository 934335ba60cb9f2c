"""Pinning tool definitions: trust on first use, then hold what changes.

The gateway hashes what a host reads of each upstream component -- a tool's name,
title, description, input and output schemas and annotations; a prompt's or
resource's descriptions -- the first time it sees a server (trust on first use) or
when an operator approves it.  On every catalog build (``UpstreamManager._rebuild``)
``PinBook.review`` compares the server's curated catalog with its pins:

* ``off``: nothing is hashed;
* ``warn``: a changed or new component stays exposed, is logged and audited once per
  definition, and is listed in the server's detail until approved;
* ``enforce``: a changed component, a new one on a server that already has pins, and a
  first-seen one whose text carries injection markers are *held*: moved to the
  curation's hidden list with a message saying what changed and how to approve, so
  lists leave them out and a call by name is refused on every path (the pipeline's
  curator stage reads the same hidden index).

``injection_markers`` is a static check of every text of a definition for what tool
poisoning uses: hidden-instruction tags (``<IMPORTANT>``), "ignore previous
instructions"-style phrases, zero-width, bidi-control and tag characters, and very
long texts.  Its findings are flagged in the same places.

Persistence is the store's (``store/base.py: PinStore``): the gateway loads the
approved pins at start, writes first-use pins and pending definitions as they
appear, and re-reads the pins of servers with open findings so that an approval
made elsewhere (the CLI on the same file, another instance) releases them.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from fast_mcp_gateway.config.curation import PinningMode
from fast_mcp_gateway.config.names import logged_name
from fast_mcp_gateway.routing.curation import KIND_LABEL, Curated, Entry, Hidden, Kind
from fast_mcp_gateway.routing.pin_reports import FindingReports
from fast_mcp_gateway.store.records import PinRecord
from fast_mcp_gateway.upstream.model import Catalog
from fast_mcp_gateway.upstream.signals import ChangeSignal

State = Literal["changed", "new", "flagged"]
PinKey = tuple[str, str, str]                   # server, kind, original name / URI
TOFU = "first use"                              # the approver of a first-use pin
LONG_TEXT = 4000                                # characters: "very long" for one text
_FIELDS: dict[str, tuple[str, ...]] = {
    "tool": ("name", "title", "description", "inputSchema", "outputSchema", "annotations"),
    "prompt": ("name", "title", "description", "arguments"),
    "resource": ("uri", "name", "title", "description", "mimeType"),
    "resource_template": ("uriTemplate", "name", "title", "description", "mimeType"),
}

_TAG = re.compile(r"<\s*/?\s*(important|system|instructions?|secret|hidden|admin|assistant|"
                  r"user|prompt|context|critical|note-to-ai)\b[^>]*>", re.IGNORECASE)
_PHRASES = re.compile(
    r"\b(ignore|disregard|forget|override)\s+(all\s+|any\s+)?(the\s+)?(previous|prior|above|"
    r"earlier|preceding|other)\s+(instructions|prompts?|rules|directions)"
    r"|\bdo\s+not\s+(tell|inform|mention\s+(this\s+)?to|alert)\s+the\s+user"
    r"|\bwithout\s+(telling|informing)\s+the\s+user"
    r"|\b(you\s+must|always)\s+(first\s+)?(read|send|upload|include)\s+[^.]{0,60}"
    r"(\.ssh|id_rsa|\.env|credentials|api[_ ]?keys?|passwords?|secrets?)"
    r"|\bsystem\s+prompt\b", re.IGNORECASE)
_INVISIBLE = {"\u200b": "ZERO WIDTH SPACE", "\u200c": "ZERO WIDTH NON-JOINER",
              "\u200d": "ZERO WIDTH JOINER", "\u2060": "WORD JOINER",
              "\ufeff": "ZERO WIDTH NO-BREAK SPACE", "\u180e": "MONGOLIAN VOWEL SEPARATOR",
              "\u00ad": "SOFT HYPHEN"}
_BIDI = frozenset("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_HIDDEN_CHARS = re.compile("[" + "".join(sorted(_INVISIBLE)) + "".join(sorted(_BIDI))
                           + "\U000e0000-\U000e007f]")


def definition(kind: str, item: Any) -> dict[str, Any]:
    """What is pinned of an upstream component (wire field names, no ``None``)."""
    data = item.model_dump(by_alias=True, mode="json", exclude_none=True)
    return {k: data[k] for k in _FIELDS[kind] if k in data}


def digest(defn: dict[str, Any]) -> str:
    """The sha256 of ``defn``'s canonical JSON."""
    text = json.dumps(defn, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    # surrogatepass: a lone surrogate (an in-process server's string) is no UTF-8, and
    # raised out of the catalog's rebuild, which stopped the gateway
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _texts(k)
            yield from _texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)


def injection_markers(defn: Any) -> list[str]:
    """What in ``defn``'s texts looks like hidden instructions (empty: nothing)."""
    found: dict[str, None] = {}
    for text in _texts(defn):
        if m := _TAG.search(text):
            found[f"hidden-instruction tag {m.group(0)[:40]!r}"] = None
        if m := _PHRASES.search(text):
            found[f"instruction phrase {m.group(0)[:60]!r}"] = None
        if _HIDDEN_CHARS.search(text) is None:
            chars: set[str] = set()         # the common case: one scan, no per-char loop
        else:
            chars = set(text)
        for ch in chars:
            if ch in _INVISIBLE:
                found[f"invisible character U+{ord(ch):04X} ({_INVISIBLE[ch]})"] = None
            elif ch in _BIDI:
                found[f"bidi control character U+{ord(ch):04X} "
                      f"({unicodedata.name(ch, 'BIDI CONTROL')})"] = None
            elif 0xE0000 <= ord(ch) <= 0xE007F:
                found["Unicode tag characters (invisible text)"] = None
        if len(text) > LONG_TEXT:
            found[f"very long text ({len(text)} characters, over {LONG_TEXT})"] = None
    return list(found)


def diff(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """A unified diff of two definitions' pretty JSON (old: none pinned yet)."""
    import difflib  # here, not at the top: only a changed definition needs it

    def lines(d: dict[str, Any] | None) -> list[str]:
        if d is None:
            return []
        return json.dumps(d, indent=2, sort_keys=True, ensure_ascii=True).splitlines()
    return "\n".join(difflib.unified_diff(lines(old), lines(new), "approved", "current",
                                          lineterm=""))


@dataclass(frozen=True, slots=True)
class Finding:
    """A component whose current definition is not the approved one (or is flagged)."""

    server: str
    kind: Kind
    name: str
    state: State
    current: dict[str, Any]
    current_digest: str
    approved: PinRecord | None
    markers: tuple[str, ...]
    held: bool

    @property
    def key(self) -> PinKey:
        return (self.server, self.kind, self.name)

    @property
    def changed_fields(self) -> list[str]:
        old = json.loads(self.approved.definition) if self.approved is not None else {}
        return [k for k in _FIELDS[self.kind] if old.get(k) != self.current.get(k)]

    def summary(self) -> str:
        what = f"{KIND_LABEL[self.kind]} '{logged_name(self.name)}' of server '{self.server}'"
        if self.state == "changed":
            text = f"{what} changed since it was approved ({', '.join(self.changed_fields)})"
        elif self.state == "new":
            text = f"{what} is new since the server's definitions were pinned"
        else:
            text = f"{what} was seen for the first time"
        if self.markers:
            text += f"; its text has injection markers: {'; '.join(self.markers)}"
        return text

    @property
    def message(self) -> str:
        """The refusal a host gets while it is held."""
        # Written to be pasted: the server as a JSON string and as one shell word.
        body = json.dumps({"server": self.server}, ensure_ascii=False)
        return (f"{self.summary()}. It is held until an operator reviews and approves it: "
                f"admin tool gateway_approve_changes {body}, "
                f"`mcp-gateway pins approve {shlex.quote(self.server)}`, or "
                f"POST /api/v1/pins/approve {body}")

    def diff(self) -> str:
        old = json.loads(self.approved.definition) if self.approved is not None else None
        return diff(old, self.current)

    def pending_record(self) -> PinRecord:
        return PinRecord(server=self.server, kind=self.kind, name=self.name,
                         digest=self.current_digest, definition=_dumps(self.current),
                         status="pending", actor=self.state, at=time.time(),
                         markers=list(self.markers))


def _dumps(defn: dict[str, Any]) -> str:
    return json.dumps(defn, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass
class PinBook:
    """The approved pins and the open findings of every server (see the module doc).

    ``review`` runs inside the synchronous catalog build; what must reach the store
    (first-use pins, pending definitions, events to audit) is queued, and the
    gateway's pin worker writes it (``take_writes``, ``wait_writes``).
    """

    pins: dict[PinKey, PinRecord] = field(default_factory=dict)
    findings: dict[str, dict[tuple[str, str], Finding]] = field(default_factory=dict)
    persistent: bool = False           # a worker writes the queue to a store
    _writes: list[PinRecord] = field(default_factory=list)
    _stale: list[PinKey] = field(default_factory=list)
    _events: list[Finding] = field(default_factory=list)
    _reported: set[tuple[PinKey, str]] = field(default_factory=set)
    _memo: dict[PinKey, tuple[Any, str, tuple[str, ...]]] = field(
        default_factory=dict)
    _wake: anyio.Event | None = None
    # Local approvals the store has not confirmed yet: ``load`` never puts an older
    # stored pin over them, and the pin worker drops a store read that overlapped one.
    generation: int = 0
    saving: set[PinKey] = field(default_factory=set)
    # The pin worker's progress: ``audited`` events written so far, ``written`` notified
    # after each round (whoever must see an event in the audit log waits on it).
    audited: int = 0
    written: ChangeSignal = field(default_factory=ChangeSignal)
    reports: FindingReports = field(default_factory=FindingReports)

    # -- the catalog build ------------------------------------------------------------

    def review(self, server: str, mode: PinningMode, catalog: Catalog, curated: Curated) -> None:
        """Compare ``server``'s curated catalog with its pins; hold (``enforce``) what
        must be approved by moving it to ``curated.hidden``."""
        if mode == "off":
            self.findings.pop(server, None)
            return
        upstream: dict[Kind, dict[str, Any]] = {
            "tool": {t.name: t for t in catalog.tools},
            "prompt": {p.name: p for p in catalog.prompts},
            "resource": {str(r.uri): r for r in catalog.resources},
            "resource_template": {t.uri_template: t for t in catalog.templates},
        }
        pinned_server = any(k[0] == server for k in self.pins)
        found: dict[tuple[str, str], Finding] = {}
        held: set[tuple[str, str]] = set()
        sections: list[tuple[Kind, Sequence[Entry[Any]]]] = [
            ("tool", curated.tools), ("prompt", curated.prompts),
            ("resource", curated.resources), ("resource_template", curated.templates)]
        for kind, entries in sections:
            for entry in entries:
                item = upstream[kind].get(entry.original)
                if item is None:
                    continue
                finding = self._check(server, kind, entry.original, item, mode, pinned_server)
                if finding is not None:
                    found[(kind, entry.original)] = finding
                    if finding.held:
                        held.add((kind, entry.original))
        if held:
            curated.tools = [e for e in curated.tools if ("tool", e.original) not in held]
            curated.prompts = [e for e in curated.prompts if ("prompt", e.original) not in held]
            curated.resources = [e for e in curated.resources
                                 if ("resource", e.original) not in held]
            curated.templates = [e for e in curated.templates
                                 if ("resource_template", e.original) not in held]
            for key in sorted(held):
                f = found[key]
                curated.hidden.append(Hidden(f.kind, server, f.name, "pinning", f.message))
        gone = {(server, k, n) for (k, n) in self.findings.get(server, {}) if (k, n) not in found}
        if gone:
            # A finding that went away unapproved (the definition changed back): its
            # pending row would offer the CLI a definition nobody serves any more, and
            # should it come back it is a new event.
            self._reported = {r for r in self._reported if r[0] not in gone}
            if self.persistent:
                self._writes = [w for w in self._writes if w.status != "pending"
                                or (w.server, w.kind, w.name) not in gone]
                self._stale += sorted(gone)
        if found:
            self.findings[server] = found
        else:
            self.findings.pop(server, None)
        self._wake_worker()

    def _check(self, server: str, kind: Kind, name: str, item: Any, mode: PinningMode,
               pinned_server: bool) -> Finding | None:
        key = (server, kind, name)
        memo = self._memo.get(key)
        if memo is None or memo[0] is not item:
            # Catalogs are immutable per fetch: hash and scan each definition once.  The
            # definition itself is not kept (a dict per component, ~2 KB per tool): the
            # rare finding or first-use pin rebuilds it from the item.
            defn = definition(kind, item)
            memo = self._memo[key] = (item, digest(defn), tuple(injection_markers(defn)))
        _, now, markers = memo
        pin = self.pins.get(key)
        if pin is not None and pin.digest == now:
            return None              # approved as it is (markers included)
        defn = definition(kind, item)
        if pin is None and not pinned_server and not (markers and mode == "enforce"):
            # Trust on first use: the server's first catalog is what gets pinned.
            record = PinRecord(server=server, kind=kind, name=name, digest=now,
                               definition=_dumps(defn), status="approved", actor=TOFU,
                               at=time.time(), markers=list(markers))
            self.pins[(server, kind, name)] = record
            if self.persistent:
                self._writes.append(record)
            if not markers:
                return None
            finding = Finding(server, kind, name, "flagged", defn, now, record, markers, False)
        else:
            state: State = "changed" if pin is not None else ("new" if pinned_server
                                                               else "flagged")
            finding = Finding(server, kind, name, state, defn, now, pin, markers,
                              held=mode == "enforce")
        self._report(finding)
        return finding

    def _report(self, finding: Finding) -> None:
        token = (finding.key, finding.current_digest)
        if token in self._reported:
            return
        self._reported.add(token)
        self._events.append(finding)   # logged and audited by the pin worker (pin_reports)
        approved = finding.approved
        if self.persistent and (approved is None or approved.digest != finding.current_digest):
            self._writes.append(finding.pending_record())   # for the CLI to show and approve
            if finding.key in self._stale:
                self._stale.remove(finding.key)

    # -- approvals and persistence ----------------------------------------------------

    def open_findings(self, server: str | None = None) -> list[Finding]:
        """Open findings, by server then kind and name."""
        servers = [server] if server is not None else sorted(self.findings)
        return [f for s in servers for _, f in sorted(self.findings.get(s, {}).items())]

    def approve(self, server: str, names: Iterable[str] | None, actor: str) -> list[Finding]:
        """Make the current definitions of ``server``'s findings (all, or those named)
        the approved pins; returns what was approved (the caller persists
        ``approved_records`` and rebuilds the catalog)."""
        wanted = set(names) if names is not None else None
        done: list[Finding] = []
        self.generation += 1
        for (kind, name), finding in sorted(self.findings.get(server, {}).items()):
            if wanted is not None and name not in wanted:
                continue
            self.pins[finding.key] = PinRecord(
                server=server, kind=kind, name=name, digest=finding.current_digest,
                definition=_dumps(finding.current), status="approved", actor=actor,
                at=time.time(), markers=list(finding.markers))
            self.saving.add(finding.key)
            done.append(finding)
        return done

    def saved(self, keys: Iterable[PinKey]) -> None:
        """The store has (or has given up on) the approvals of ``keys``."""
        self.saving.difference_update(keys)
        self.generation += 1

    def load(self, records: Iterable[PinRecord], servers: Iterable[str] | None = None) -> bool:
        """Take the store's approved pins (of ``servers``, or all); returns whether any
        differs from what the book held.  First-use pins the store lacks are kept
        (their write is queued)."""
        scope = set(servers) if servers is not None else None
        fresh = {(r.server, r.kind, r.name): r for r in records if r.status == "approved"}
        changed = False
        for key in [k for k in self.pins if scope is None or k[0] in scope]:
            if key not in fresh and self.pins[key].actor != TOFU and key not in self.saving:
                del self.pins[key]
                changed = True
        for key, record in fresh.items():
            if key in self.saving:
                continue
            old = self.pins.get(key)
            if old is None or old.digest != record.digest:
                changed = True
            self.pins[key] = record
        return changed

    def forget(self, server: str) -> None:
        """Drop everything held of ``server`` (its pins, findings and queued writes): its
        next catalog, should it be added again, is trusted on first use."""
        self.pins = {k: r for k, r in self.pins.items() if k[0] != server}
        self._memo = {k: m for k, m in self._memo.items() if k[0] != server}
        self.findings.pop(server, None)
        self._reported = {r for r in self._reported if r[0][0] != server}
        self._writes = [w for w in self._writes if w.server != server]
        self._stale = [k for k in self._stale if k[0] != server]
        self.saving = {k for k in self.saving if k[0] != server}
        self.generation += 1

    def take_writes(self) -> tuple[list[PinRecord], list[Finding]]:
        """What to write to the store and what to audit since the last call."""
        writes, events = self._writes, self._events
        self._writes, self._events = [], []
        return writes, events

    def take_stale(self) -> list[PinKey]:
        """Pending rows to delete: findings that went away without an approval."""
        stale, self._stale = self._stale, []
        return stale

    def requeue(self, writes: list[PinRecord]) -> None:
        """Put back writes the store did not take (it is down: retried later)."""
        self._writes[:0] = writes

    async def wait_writes(self, within: float) -> None:
        """Return when there is something to write or after ``within`` seconds."""
        if self._writes or self._events or self._stale:
            return
        self._wake = anyio.Event()
        with anyio.move_on_after(within):
            await self._wake.wait()

    def nudge(self) -> None:
        """Wake the pin worker (a held report may be due)."""
        if self._wake is not None:
            self._wake.set()

    def _wake_worker(self) -> None:
        if self._wake is not None and (self._writes or self._events or self._stale):
            self._wake.set()
