"""Masking secrets in what the gateway shows, stores and logs.

A leaf: imports nothing of the gateway but ``value_index`` (a leaf too), so config,
upstream, store and admin can all use it.  A *secret* is a value that came from
``${VAR}`` interpolation (the config remembers them), a value under a credential-like
key (``token``, ``Authorization``, ``api_key``, ...), the credentials in a URL
(userinfo, credential-like query parameters), or a credential in an issuer's
well-known format anywhere (``ghp_...``, ``sk-...``, ``AKIA...``, this gateway's own
``mgw_...``, a JWT, a
private-key PEM block: ``mask_tokens``).

``SECRETS`` is the process-wide registry every loaded server config feeds (values only,
never logged); ``mask_text`` masks its values, token formats and URL credentials in any
text.  It is
applied where a text is *built* (an error, a stderr line, a record, an output row), not
per log call of traffic; ``log_filter.SecretLogFilter`` is the last line for log records.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Collection, Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit

from fast_mcp_gateway.telemetry.value_index import GRAM, ValueIndex

MASK = "***"
# Shorter values would mask common substrings ("1", "on") all over the text.
MIN_SECRET_LENGTH = 4
# A name holding a credential: those words anywhere, and key, pass, pwd and pat as a word of
# their own ("OPENAI_KEY", "DB_PASS", "MYSQL_PWD", "GITHUB_PAT"; not "KEYBOARD", "PATH",
# nor a bare "PWD", the shell's working directory).
CREDENTIAL_KEY = re.compile(r"(?i)(token|secret|passw|passphrase|api[-_]?key|auth|credential"
                            r"|cookie|session|(?:^|[-_.])(?:key|pass|pat)(?=$|[-_.])"
                            r"|[-_.]pwd(?=$|[-_.]))")
# Headers known to carry no credential: any other configured header's value is shown
# masked, whatever its name (``X-Tenant-Key``, ``X-Custom``: a header set for an upstream
# is most often how it is authenticated).
PLAIN_HEADERS = frozenset({
    "accept", "accept-charset", "accept-encoding", "accept-language", "cache-control",
    "connection", "content-language", "content-type", "dnt", "from", "mcp-protocol-version",
    "origin", "pragma", "referer", "traceparent", "tracestate", "user-agent",
    "x-correlation-id", "x-request-id", "x-requested-with"})
# Query parameter names whose values are credentials (signed URLs, API keys in the query).
_CREDENTIAL_PARAM = (r"[A-Za-z0-9_.\-]*(?:token|secret|passw|pwd|api[-_]?key|apikey|key|sig"
                     r"|signature|auth|credential|session|code)[A-Za-z0-9_.\-]*")
_QUERY_CREDENTIAL = re.compile(rf"(?i)([?&;]{_CREDENTIAL_PARAM}=)([^&#\s\"'<>;]+)")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#\"'<>]+@")
# "Bearer <token>" in any case; "Basic <base64>" only when it looks encoded (a digit,
# "+", "/", "=" or mixed case), so that "basic configuration" stays as written.
_BEARER = re.compile(r"\b((?i:bearer))\s+[A-Za-z0-9._~+/=\-]{8,}"
                     r"|\b(Basic)\s+(?=[A-Za-z0-9+/]*(?:[0-9+/=]|[a-z][A-Z]|[A-Z]{2}))"
                     r"[A-Za-z0-9+/]{8,}={0,2}")
_QUERY_KEY = re.compile(rf"(?i)^{_CREDENTIAL_PARAM}$")
_URL_PART = re.compile(r"[A-Za-z0-9._~%+=\-]+")
# Credentials in an issuer's well-known format, whatever key they are under or none (a
# token a host passes as a tool's ``text`` and its upstream echoes in an error): the
# issuer's prefix, then at least the format's length, between word boundaries, so that
# prose, UUIDs, hashes, paths and base64 never match.  Stripe's publishable ``pk_`` keys
# are not secrets; a PEM block cut short is masked to the end of the text.
# Linear on any input: each part is a prefix and flat runs, and a run of [A-Za-z0-9_-]
# is entered only at its start (``_AFTER_FIRST``: nothing of the kind before the
# part's first character) -- or an escape before it, as JSON and ``repr`` write a
# string ("line\nghp_...", "\u00e9ghp_...": an echoed argument in an error text, a
# JSON body in a log line; the escape's letter hid the token).  Every part starts with
# a literal character, so ``sub`` skips every other character without trying the parts
# (~4x faster on a long text).
_AFTER_FIRST = r"(?:(?<![A-Za-z0-9_\-].)|(?<=\\[nrtbf].)|(?<=\\u[0-9A-Fa-f]{4}.))"
_END = r"(?![A-Za-z0-9_\-])"
_PEM_LINE = r"-----{} [A-Z0-9 ]{{0,40}}PRIVATE KEY[A-Z ]{{0,10}}-----"
_SK_KINDS = r"(?:proj|svcacct|admin|None|ant-(?:api|admin|oat|sid)[0-9]{2}|or-v1)"
_TOKENS = re.compile("|".join([
    rf"g{_AFTER_FIRST}h[pousr]_[A-Za-z0-9]{{36,}}{_END}",  # GitHub
    rf"g{_AFTER_FIRST}ithub_pat_[A-Za-z0-9_]{{82,}}{_END}",
    # Slack: bot, user, legacy and refresh tokens (xoxe-, xoxe.xoxp-), app-level tokens
    rf"x{_AFTER_FIRST}ox(?:[abprse]|e\.xox[abprs])-[A-Za-z0-9-]{{10,}}{_END}",
    rf"x{_AFTER_FIRST}app-[A-Za-z0-9-]{{10,}}{_END}",
    # OpenAI, Anthropic, OpenRouter by their own prefixes (sk-proj-, sk-svcacct-,
    # sk-admin-, sk-None-, sk-ant-api03-, sk-ant-admin01-, sk-ant-oat01-, sk-or-v1-):
    # 16+ characters after it.  Other sk- keys (OpenAI's first, DeepSeek's, LiteLLM's
    # virtual keys, a key cut short): 20+.  Either is masked only when its body is
    # random, not words (``_sk_words``: "sk-admin-dashboard-settings" is a name)
    rf"s{_AFTER_FIRST}k-{_SK_KINDS}-[A-Za-z0-9_-]{{16,}}{_END}",
    rf"s{_AFTER_FIRST}k-[A-Za-z0-9_-]{{20,}}{_END}",
    rf"s{_AFTER_FIRST}k_(?:live|test)_[A-Za-z0-9]{{24,}}{_END}",  # Stripe secret keys
    rf"r{_AFTER_FIRST}k_(?:live|test)_[A-Za-z0-9]{{24,}}{_END}",  # and restricted ones
    rf"g{_AFTER_FIRST}lpat-[A-Za-z0-9_-]{{20,}}{_END}",  # GitLab
    rf"m{_AFTER_FIRST}gw_[A-Za-z0-9_-]{{43}}{_END}",  # this gateway's ('token new')
    rf"A{_AFTER_FIRST}(?:KIA|SIA)[A-Z0-9]{{16}}{_END}",  # AWS access key ids
    rf"A{_AFTER_FIRST}Iza[A-Za-z0-9_-]{{35}}{_END}",  # Google API keys
    rf"e{_AFTER_FIRST}yJ[A-Za-z0-9_-]{{8,}}\.eyJ[A-Za-z0-9_-]{{8,}}\.[A-Za-z0-9_-]{{8,}}{_END}",
    _PEM_LINE.format("BEGIN") + r"(?s:.*?)(?:" + _PEM_LINE.format("END") + r"|\Z)",
]))
# What a masked token keeps: the part of its format that says what it was.
_KEPT = re.compile(rf"gh[pousr]_|github_pat_|xoxe\.xox[abprs]-|xox[abprse]-|xapp-"
                   rf"|sk-{_SK_KINDS}-|sk-"
                   r"|[sr]k_(?:live|test)_|glpat-|mgw_|A(?:KIA|SIA|Iza)|eyJ|"
                   + _PEM_LINE.format("BEGIN"))


class SecretRegistry:
    """The secret values known to this process, masked by ``mask``.

    Values of ``GRAM`` characters or more are kept in a ``ValueIndex`` (a dict lookup
    per up to 32 characters of text, however many values; adding one costs ~40 us);
    the few shorter ones (4 or 5 characters) in one compiled alternation, applied
    after the index, so that a secret containing a short one is masked whole.  Every
    value was in one alternation, recompiled at each ``add``: a config of 1,000 servers
    with a token each (one ``add`` per server) took 74 s to load, and each text masked
    ~8 ms.  Values are only ever added: a secret once used may still sit in a buffer or
    an old record.  ``add`` may run in another thread than ``mask``.
    """

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._long = ValueIndex(MASK)
        self._short: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        new = {form for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH
               for form in written_forms(v)}
        if new <= self._values:
            return
        with self._lock:
            fresh = new - self._values
            merged = self._values | fresh
            if long := [v for v in fresh if len(v) >= GRAM]:
                self._long.update(long, ())
            if any(len(v) < GRAM for v in fresh):
                short = sorted((v for v in merged if len(v) < GRAM), key=len, reverse=True)
                self._short = re.compile("|".join(re.escape(v) for v in short))
            self._values = merged

    def mask(self, text: str) -> str:
        if not self._values:
            return text
        text = self._long.mask(text)
        short = self._short
        return text if short is None else short.sub(MASK, text)

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def __len__(self) -> int:
        return len(self._values)


SECRETS = SecretRegistry()


def written_forms(value: str) -> set[str]:
    """``value`` as written, and as JSON (ASCII or not) and ``repr`` write it in a
    string: a server printing its env as JSON, or an error quoting a dict, shows a
    secret with a quote, backslash or non-ASCII letter escaped (review23)."""
    forms = {value}
    if not value.isascii() or '"' in value or "'" in value or "\\" in value \
            or not value.isprintable():
        forms.update((json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
                      repr(value)[1:-1]))
    return forms


class RecentSecrets(ValueIndex):
    """Credential values of recent calls' arguments (a password a host passes to a tool),
    masked as the registry's are while they may come back: an upstream that prints its
    input to stderr as it crashes puts it in the stderr tail, ``last_error`` and the
    log, made before the call's own error (which ``mask_argument_values`` masks).
    Only the last ``limit`` values are kept (a host may send a new one per call: the
    registry, add-only, would grow without bound), each at most ``MAX_LENGTH``
    characters.  ``mask`` (``ValueIndex``) finds those a text holds value by value when
    few are no longer than the text, else in an index (a dict lookup per up to 32
    characters of text, however many values), no compiled pattern to rebuild per
    value; it masks every character of each occurrence (overlapping ones as one
    ``***``).  Filled only for tools whose schema names a credential-like property
    (``front/calls.py``): empty, it costs nothing.  ``add`` may run in another thread
    than ``mask``."""

    MIN_LENGTH = GRAM  # shorter ones would mask common words in every log line for a while
    MAX_LENGTH = 1024

    def __init__(self, limit: int = 256, longest: int = MAX_LENGTH) -> None:
        super().__init__(MASK)
        self.limit, self.longest = limit, longest
        self._values: dict[str, None] = {}  # oldest first
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            added: dict[str, None] = {}
            for value in values:
                if not (self.MIN_LENGTH <= len(value) <= self.longest):
                    continue
                if value in self._values:
                    del self._values[value]  # seen again: the newest now
                else:
                    added[value] = None
                self._values[value] = None
            dropped = []
            while len(self._values) > self.limit:
                oldest = next(iter(self._values))
                del self._values[oldest]
                if oldest in added:
                    del added[oldest]   # added and dropped at once: never indexed
                else:
                    dropped.append(oldest)
            if added or dropped:
                self.update(added, dropped)

    def __contains__(self, value: object) -> bool:
        return value in self._values


RECENT = RecentSecrets()

CALLERS = RecentSecrets(limit=1024, longest=16 * 1024)
"""The callers' own credentials a ``${caller.*}`` server is sent (``upstream/
credentials.for_caller``: the bearer token, the filled headers), masked while their
sessions may echo them.  Bounded, not in ``SECRETS``: each JWT a caller refreshes is a
new value, and ``SECRETS`` is add-only.  A JWT that old has expired; the limit is ten
times ``max_clients``' default."""


def mask_urls(text: str) -> str:
    """URL userinfo, credential-like query parameters and bearer tokens as ``***``."""
    if "://" in text:
        text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
    if "=" in text:
        text = _QUERY_CREDENTIAL.sub(_masked_value, text)
    if "earer" in text or "EARER" in text or "Basic" in text:
        text = _BEARER.sub(lambda m: f"{m.group(1) or m.group(2)} {MASK}", text)
    return text


def mask_tokens(text: str) -> str:
    """Credentials in a well-known format as their prefix and ``***`` (``ghp_***``)."""
    return _TOKENS.sub(_masked_token, text) if _may_hold_token(text) else text


def _may_hold_token(t: str) -> bool:
    # Spelled out: ~0.4 us for a short text (any() over a tuple took ~1 us), the cost of
    # a string that holds no token (most of them, every call's arguments among them).
    return ("ghp_" in t or "gho_" in t or "ghu_" in t or "ghs_" in t or "ghr_" in t
            or "github_pat_" in t or "xox" in t or "xapp-" in t or "sk-" in t or "k_live_" in t
            or "k_test_" in t or "glpat-" in t or "mgw_" in t or "AKIA" in t or "ASIA" in t
            or "AIza" in t or "eyJ" in t or "PRIVATE KEY" in t)


def _masked_token(match: re.Match[str]) -> str:
    token = match.group()
    kept = _KEPT.match(token)
    if token.startswith("sk-") and kept is not None and _sk_words(token[kept.end():]):
        return token
    return f"{kept.group() if kept else ''}{MASK}"


# A word of a name: lower case, an acronym, Capitalised, CamelCase or camelCase (its
# inner words of 3+ letters), a number after it (q3, v2, HTTP2); or a number.  None is
# longer than words are.  A key's body -- random base64url, alphanumerics or hex, 20 to
# 160 characters -- has runs that are none of these (case flipping every letter or two,
# digits among letters, 21+ letters or 9+ digits in a row, "--" or "__").
_WORD = re.compile(r"[A-Z]{0,10}[a-z]{0,20}(?:[A-Z][a-z]{2,20})*[0-9]{0,4}|[0-9]{1,8}")
_SEPARATOR = re.compile(r"[-_]")


def _sk_words(body: str) -> bool:
    """Whether the part of an ``sk-`` match after its prefix is words joined by ``-`` or
    ``_`` (a slug, a setting's name: ``dashboard-settings``, ``hynix-2024-q3-results``),
    which a random key of 32+ characters never is (a 22-character LiteLLM key: about
    once in 10^4; the rule before, a digit and both cases, missed one in 40)."""
    return all(part and _WORD.fullmatch(part) for part in _SEPARATOR.split(body.rstrip("-_")))


def _masked_value(match: re.Match[str]) -> str:
    """A query credential masked; punctuation ending the sentence around the URL is
    kept ("...?key=s: connection refused" keeps its colon)."""
    value = match[2]
    return f"{match[1]}{MASK}{value[len(value.rstrip('.,:)')):]}"


def mask_text(text: str, secrets: Collection[str] = ()) -> str:
    """``text`` with every known secret (the registry's and ``secrets``), every
    credential in a well-known format and every URL credential masked: for anything the
    gateway stores, logs or returns."""
    if not text:
        return text
    if secrets:
        text = mask_secrets(text, secrets)
    return mask_urls(mask_tokens(RECENT.mask(CALLERS.mask(SECRETS.mask(text)))))


def url_credentials(url: str) -> list[str]:
    """The credentials inside ``url``, to register: userinfo, credential-like query
    values, and path segments or query values that look like keys (``_keylike``): many
    services' MCP URL is the credential (``/api/mcp/s/<key>/mcp``, ``/<uuid>/github``),
    and an error naming the URL showed it to every token that may read a server's
    last error."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [v for v in (parts.username, parts.password) if v]
    found += [v for k, v in parse_qsl(parts.query) if _QUERY_KEY.match(k) or _keylike(v)]
    found += [segment for segment in parts.path.split("/") if _keylike(segment)]
    return found


_URL_WORDS = re.compile(r"[-_.~]")


def _keylike(part: str) -> bool:
    """Whether a URL's path segment or query value looks like a key: 16+ characters a
    URL carries unencoded, not words joined by ``-``, ``_``, ``.`` or ``~``
    (``release-notes-2024``, ``openapi.v1.json`` are kept)."""
    return (len(part) >= 16 and _URL_PART.fullmatch(part) is not None
            and not all(w and _WORD.fullmatch(w) for w in _URL_WORDS.split(part.strip("-_.~"))))


def _looks_like_credential(value: str) -> bool:
    """A value under a credential-like key worth masking everywhere: not a short plain
    word (``AUTH_MODE: disabled`` must not turn every "disabled" in the logs into ***)."""
    value = value.strip()
    return len(value) >= 8 and not (value.isalpha() and len(value) < 16)


def _shell_words(line: str) -> list[str]:
    """The words of a shell line, its operators (``;``, ``&&``, ``>``) apart."""
    import shlex  # here, not at the top: only a shell line needs it

    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # an unclosed quote: words as they stand
        return line.split()


def credential_args(args: Sequence[str]) -> list[str]:
    """The credentials a command line carries under a credential-like name:
    ``--api-key=X``, ``--token X``, ``API_KEY=X`` (as in ``docker run -e``), also inside
    one argument holding a shell line (``sh -c "GITHUB_TOKEN=X exec npx ..."``)."""
    found = []
    for index, arg in enumerate(args):
        words = _shell_words(arg) if " " in arg and ("=" in arg or "-" in arg) else [arg]
        if len(words) > 1:
            found += credential_args(words)
            continue
        name, sep, value = arg.partition("=")
        if sep and CREDENTIAL_KEY.search(name) and not any(c.isspace() for c in name):
            found.append(value)
        elif not sep and arg.startswith("-") and CREDENTIAL_KEY.search(arg) \
                and index + 1 < len(args) and not args[index + 1].startswith("-"):
            found.append(args[index + 1])
    # A path or URL under such a name (--auth-config ./a.json) is where a secret is, not
    # one: masked, it would hide the path in every log line (URL credentials are masked
    # as URLs anyway).
    return [value for value in found if _looks_like_credential(value)
            and not value.startswith(("/", "./", "../", "~")) and "://" not in value]


def register_config_secrets(secrets: Iterable[str], env: dict[str, str],
                            headers: dict[str, str], urls: Iterable[str],
                            args: Sequence[str] = ()) -> None:
    """Feed ``SECRETS`` with what one server's config holds (``config_secrets``)."""
    SECRETS.add(config_secrets(secrets, env, headers, urls, args))


def config_secrets(secrets: Iterable[str], env: dict[str, str], headers: dict[str, str],
                   urls: Iterable[str], args: Sequence[str] = ()) -> list[str]:
    """What one server's config holds that is secret: interpolated values, values under
    credential-like env/header keys, URL credentials, credential arguments."""
    values = list(secrets) + credential_args(args)
    for mapping, credential in ((env, CREDENTIAL_KEY.search), (headers, credential_header)):
        for key, value in mapping.items():
            if not credential(key):
                continue
            # "Bearer x" / "Basic x": the credential alone shows up in texts too.
            parts = value.split(None, 1)
            for candidate in (value, parts[1] if len(parts) == 2 else ""):
                if _looks_like_credential(candidate):
                    values.append(candidate)
    for url in urls:
        values += [v for v in url_credentials(url) if _looks_like_credential(v)]
    return values


def redact_value(key: str, value: str, secrets: Collection[str]) -> str:
    """Mask a value whose key looks like a credential, or that holds an interpolated secret."""
    if CREDENTIAL_KEY.search(key) and value:
        return MASK
    return mask_text(value, secrets)


def credential_header(name: str) -> bool:
    """Whether a configured header's value is shown masked: every header but the
    ``PLAIN_HEADERS``."""
    return name.strip().lower() not in PLAIN_HEADERS


def redact_header(name: str, value: str, secrets: Collection[str]) -> str:
    """``redact_value`` for a header: masked unless it is one of the ``PLAIN_HEADERS``."""
    if credential_header(name) and value:
        return MASK
    return mask_text(value, secrets)


def mask_secrets(text: str, secrets: Collection[str]) -> str:
    """Replace every occurrence of a known secret value inside ``text`` (longest first, so
    a secret containing another is masked whole)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    return text


# Control characters a terminal acts on (ESC starts colour, title, clipboard and link
# sequences; CR overwrites the line), all but tab and line feed.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """``text`` with every control character but tab and line feed written as ``\\xNN``:
    for text an upstream chose (names, error messages, stderr lines) on its way to a
    terminal, where an escape sequence would act rather than show."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
