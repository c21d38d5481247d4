"""The one redaction rule: secrets never leave beamside in clear.

Everything beamside sends out goes through here first: every Loki line
(:mod:`sidecar.notify`), the sidecar's own stderr log
(:mod:`sidecar.own_logging`), audit records, request and response
(:mod:`sidecar.audit`), gRPC error messages and the replies a role may not
see in clear (:mod:`sidecar.control`), alarm details built from env values
(:mod:`sidecar.alarms.checks`).  The agents on the nodes apply the same rule
before a value leaves the node (``erl_agents/beamside_redact.erl``); this is
the sidecar's side of it, and a safety net behind the agents.

**Secret names.** A key names a secret when its name contains, case
insensitively, one of :data:`SECRET_WORDS`::

    pass pwd secret token key private credential cookie auth cert salt
    signature session bearer userinfo

(``pass`` covers password, passwd, default_pass; ``key`` covers keyfile,
api_key, secret_key_base...).  The list is the agent's ``?SECRET_WORDS``,
word for word.  False positives (``keypos``, ``auth_backends``) are
accepted: showing less is the safe side.

**The marker.** A redacted value becomes ``<redacted sha256:xxxxxx>``, the
first 6 hex digits of the SHA-256 of the value's text (UTF-8) or bytes: a
changed secret shows a changed marker, and 24 bits are too few to confirm a
guess.  The agent's markers (an HMAC keyed by the cookie, or
``phash2:xxxxxx`` for big values, or ``<redacted: beyond limits>``) are kept
as they are; the agent prints its marker as a quoted string or atom
(``"<redacted sha256:abcdef>"``, ``'<redacted sha256:abcdef>'``,
``<<"<redacted sha256:abcdef>">>``): :func:`redact_text` turns the atom and
binary forms into the bare marker, keeps the string form (it may be JSON),
and never redacts a marker again.

**Structured values** (:func:`redact_json`): the value of every key that
names a secret becomes its marker (``None``, ``""`` and booleans stay:
there is no secret in them, and ``reveal_secrets: true`` must show), at any
depth.  A mapping with a ``value``, ``old``, ``new``,
``previous`` or ``app`` field is a named value (an env entry, a config
change, a dictionary entry, a SetEnv request): its ``"key"`` and ``"name"``
fields are names, shown, and when one names a secret those value fields are
redacted.  Every string goes through :func:`redact_text`.

**Free text** (:func:`redact_text`): PEM blocks (``-----BEGIN X-----``
through ``-----END X-----``, or to the end of the text when cut); URL
passwords (``scheme://user:PASS@host``: user and host are kept; a text cut
before the ``@`` loses what follows the last ``:`` unless it is a port); the
credential after ``Bearer``/``Basic``; and, as a safety net for printed
terms, the value after a key naming a secret in the shapes Erlang, Elixir,
JSON and ``key=value`` text print: ``{default_pass,<<"guest">>}``,
``{:password, "x"}``, ``#{password => "x"}``, ``password: "x"``,
``%{"password" => "x"}``, ``"token": "x"``, ``\\"token\\": \\"x\\"`` (JSON
inside a printed binary), ``password=x``.  A nested value (``[...]``,
``{...}``, ``#{...}``, ``%{...}``, ``<<...>>``) is redacted whole; a value
that never closes is redacted to the end of the text.

Nothing here raises: whatever cannot be examined becomes a marker.  The
regular expressions are compiled once; a line without any secret word, PEM
or URL costs a few scans.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "BEYOND_LIMITS",
    "PAIR_VALUE_FIELDS",
    "SECRET_WORDS",
    "is_marker",
    "is_secret_key",
    "marker",
    "redact_json",
    "redact_named",
    "redact_text",
]

#: Words that make a key name a secret (substrings, case-insensitive).
#: Keep identical to ``?SECRET_WORDS`` in ``erl_agents/beamside_redact.erl``.
SECRET_WORDS: Final = (
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "private",
    "credential",
    "cookie",
    "auth",
    "cert",
    "salt",
    "signature",
    "session",
    "bearer",
    "userinfo",
)
#: What a value nested deeper than :data:`MAX_DEPTH` becomes (the agent's own words).
BEYOND_LIMITS: Final = "<redacted: beyond limits>"
MAX_DEPTH: Final = 64
#: Keys longer than this are not names (the agent's ?KEY_CHARS).
MAX_KEY_CHARS: Final = 1024
#: Fields of a mapping whose ``key``/``name`` names a secret that hold its value.
PAIR_VALUE_FIELDS: Final = frozenset({"value", "old", "new", "previous"})
PAIR_NAME_FIELDS: Final = ("key", "name")

_WORDS = "|".join(SECRET_WORDS)
# Searched in lower-cased text: an IGNORECASE alternation is ten times slower.
_SECRET_NAME = re.compile(_WORDS)
# The words in any case, spelled out ([pP][aA][sS][sS]): faster than IGNORECASE.
_ANY_CASE_WORDS = "|".join(
    "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)
    for word in SECRET_WORDS
)
# Any marker, the agent's or ours.
_MARKER = r"<redacted(?: (?:sha256|phash2):[0-9a-f]{6}|: beyond limits)?>"
_MARKER_FULL = re.compile(_MARKER + r"\Z")
# The agent's marker printed as a term: a quoted atom or a binary (a quoted
# string stays a string: it may be JSON).
_QUOTED_MARKER = re.compile(rf"""'({_MARKER})'|<<"({_MARKER})">>""")
# A value that is a marker already, quoted or not.
_AT_MARKER = re.compile(rf"""(?:'|"|<<"|\\")?{_MARKER}(?:'|">>|"|\\")?""")
# PEM: BEGIN through the matching END, or (cut text) the base64 that follows.
_PEM = re.compile(
    r"-----BEGIN ([A-Z0-9 ]{1,64})-----"
    r"(?:.*?-----END \1-----|(?:[A-Za-z0-9+/=:, \t\r\n-]|\\[nrt])*)",
    re.DOTALL,
)
# scheme://user:PASS@ -- PASS stops where an authority stops.
_URL_PASS = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s:/?#@'\"<>\\]*:)([^\s/?#@'\"<>\\]+)@")
# "Bearer <token>" anywhere (a token is long); "Authorization: Basic <creds>"
# is the key-value rule's (a scheme word takes the credential after it along).
_BEARER = re.compile(r"(\b[Bb]earer\s+|\bBEARER\s+)([A-Za-z0-9._~+/=\-]{16,})")
# The same URL cut before its "@" (a text cut to a limit): what follows the
# last ":" is a password unless it is a port.
_URL_PASS_CUT = re.compile(
    r"([A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s:/?#@'\"<>\\]*:)([^\s/?#@'\"<>\\]+)(\.\.\.|…)?\Z"
)
_SCHEME_WORD = re.compile(
    rf"(?i)(?:bearer|basic|digest|negotiate|token)[ \t]+(?:{_MARKER}|[^\s,;&}}\])>\"']+)"
)
_IDENT = r"[A-Za-z0-9_@$\-]"
# A key naming a secret, then the separator that makes what follows its value.
_KEY_VALUE = re.compile(
    rf"""
    (?P<key>
        (?<![A-Za-z0-9_@$\-]) :? {_IDENT}*? (?:{_ANY_CASE_WORDS}) {_IDENT}* [?!]?
      | '[^'\n\\]{{0,256}}?(?:{_ANY_CASE_WORDS})[^'\n\\]{{0,256}}?'
      | <<"[^"\n\\]{{0,256}}?(?:{_ANY_CASE_WORDS})[^"\n\\]{{0,256}}?">>
      | \\"[^"\n\\]{{0,256}}?(?:{_ANY_CASE_WORDS})[^"\n\\]{{0,256}}?\\"
      | "[^"\n\\]{{0,256}}?(?:{_ANY_CASE_WORDS})[^"\n\\]{{0,256}}?"
    )
    (?P<sep> \s*,\s* | \s*=>\s* | \s*:(?=\s|"|'|<<|\\") \s* | \s*=(?![=>])\s* )
    """,
    re.VERBOSE,
)
_BARE_VALUE = re.compile(r"[^\s,;&}\])>\"']+")
_STRUCT_OPEN = re.compile(r"#[A-Za-z_]*\{|%[A-Za-z0-9_.]*\{")
_SIGIL = re.compile(r"~[A-Za-z](?=[\"'\[{(<|/])")
_OPENERS = {"[": "]", "{": "}", "(": ")"}


def is_secret_key(name: object) -> bool:
    """Whether ``name`` (text or bytes) names a secret: it contains one of
    :data:`SECRET_WORDS`, in any case."""
    try:
        if isinstance(name, bytes | bytearray):
            name = bytes(name).decode("utf-8", "replace")
        if not isinstance(name, str) or len(name) > MAX_KEY_CHARS:
            return False
        return _SECRET_NAME.search(name.lower()) is not None
    except Exception:
        return True


def marker(value: object) -> str:
    """``<redacted sha256:xxxxxx>``: the first 6 hex digits of the SHA-256 of
    ``value`` (bytes as they are, text as UTF-8, anything else as its JSON)."""
    try:
        if isinstance(value, bytes | bytearray):
            data = bytes(value)
        elif isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
        else:
            data = json.dumps(value, sort_keys=True, default=str).encode()
        return f"<redacted sha256:{hashlib.sha256(data).hexdigest()[:6]}>"
    except Exception:
        return "<redacted>"


def is_marker(text: object) -> bool:
    """Whether ``text`` is a marker (ours or an agent's), and nothing else."""
    return isinstance(text, str) and _MARKER_FULL.match(text) is not None


def redact_text(text: str) -> str:
    """``text`` with every secret it shows replaced by its marker (see the
    module's notes); never raises."""
    try:
        return _redact_text(text)
    except Exception:
        return marker(text)


def redact_json(value: Any, key: object = None) -> Any:
    """``value`` (JSON-like: dicts, lists, strings, numbers) with its secrets
    replaced: the value of a key naming a secret becomes its marker, every
    string goes through :func:`redact_text`.  ``key`` is the name ``value``
    is stored under, if any.  A new value; never raises."""
    try:
        return _json(value, is_secret_key(key), 0)
    except Exception:
        return marker(repr(value))


def redact_named(name: object, value: str) -> str:
    """The printed value of ``name`` (an env key, a dictionary key): its
    marker when ``name`` names a secret, else ``value`` through
    :func:`redact_text`; never raises."""
    try:
        return str(_hide(value)) if is_secret_key(name) else _redact_text(value)
    except Exception:
        return marker(value)


# -- structured -----------------------------------------------------------------


def _hide(value: Any) -> Any:
    """The value of a secret key: absent stays absent, a flag a flag (the
    request field ``reveal_secrets``), a marker stays."""
    if value is None or value == "" or isinstance(value, bool):
        return value
    if isinstance(value, str):
        normal = _normalize_markers(value)
        if _AT_MARKER.fullmatch(normal):
            return normal
    return marker(value)


def _json(value: Any, secret: bool, depth: int) -> Any:
    if secret:
        return _hide(value)
    if isinstance(value, str):
        return _redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= MAX_DEPTH:
        return BEYOND_LIMITS
    if isinstance(value, Mapping):
        # {"key": "default_pass", "value": ...}: "key" is a name, the value its.
        named = not PAIR_VALUE_FIELDS.isdisjoint(value) or "app" in value
        pair = named and any(
            isinstance(n := value.get(f), str) and is_secret_key(n) for f in PAIR_NAME_FIELDS
        )
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if named and k in PAIR_NAME_FIELDS and isinstance(v, str):
                hidden = False
            else:
                hidden = is_secret_key(k) or (pair and k in PAIR_VALUE_FIELDS)
            name = _redact_text(k) if isinstance(k, str) else k
            out[name] = _json(v, hidden, depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [_json(v, False, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray):
        return _redact_text(bytes(value).decode("utf-8", "replace"))
    return _redact_text(str(value))


# -- free text ------------------------------------------------------------------


def _normalize_markers(text: str) -> str:
    if "<redacted" not in text:
        return text
    return _QUOTED_MARKER.sub(lambda m: next(g for g in m.groups() if g), text)


def _redact_text(text: str) -> str:
    if not text:
        return text
    text = _normalize_markers(text)
    if "-----BEGIN " in text:
        text = _PEM.sub(lambda m: marker(m.group(0)), text)
    if "://" in text:
        text = _URL_PASS.sub(lambda m: m.group(1) + marker(m.group(2)) + "@", text)
        text = _URL_PASS_CUT.sub(_cut_url, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: m.group(1) + _keep_or_hide(m.group(2)), text)
    if _SECRET_NAME.search(text.lower()) is None:
        return text
    return _key_values(text)


def _cut_url(m: re.Match[str]) -> str:
    password = m.group(2)
    if password.isdigit() or _AT_MARKER.fullmatch(password):
        return m.group(0)
    return m.group(1) + marker(password) + (m.group(3) or "")


def _keep_or_hide(value: str) -> str:
    return value if _MARKER_FULL.match(value) else marker(value)


def _key_values(text: str) -> str:
    """The value after every key naming a secret, as its marker."""
    parts: list[str] = []
    pos = 0
    search_at = 0
    n = len(text)
    while search_at < n:
        m = _KEY_VALUE.search(text, search_at)
        if m is None:
            break
        start = m.end()
        if "," in m.group("sep") and not _after_brace(text, m.start("key")):
            # "{Key, Value}" only: a comma elsewhere separates list items.
            search_at = m.end("key")
            continue
        if start >= n:
            break
        at_marker = _AT_MARKER.match(text, start)
        if at_marker is not None:
            search_at = at_marker.end()
            continue
        end = _value_end(text, start)
        if end <= start:
            search_at = m.end()
            continue
        parts.append(text[pos:start])
        parts.append(marker(text[start:end]))
        pos = search_at = end
    if not parts:
        return text
    parts.append(text[pos:])
    return "".join(parts)


def _after_brace(text: str, at: int) -> bool:
    i = at - 1
    while i >= 0 and text[i] in " \t\r\n":
        i -= 1
    return i >= 0 and text[i] == "{"


def _value_end(text: str, start: int) -> int:
    """Where the value that starts at ``start`` ends (exclusive)."""
    c = text[start]
    if text.startswith('\\"', start):
        end = text.find('\\"', start + 2)
        return len(text) if end < 0 else end + 2
    if c in "\"'":
        return _string_end(text, start + 1, c)
    sigil = _SIGIL.match(text, start)
    if sigil is not None:  # Elixir: ~c"...", ~s(...), ~w[...]
        at = sigil.end()
        d = text[at]
        if d in "\"'":
            return _string_end(text, at + 1, d)
        if d in _OPENERS or d == "<":
            return _balanced_end(text, at) if d != "<" else _closing(text, at + 1, ">")
        return _closing(text, at + 1, d)
    opener = _STRUCT_OPEN.match(text, start)
    if c in _OPENERS or text.startswith("<<", start) or opener is not None:
        return _balanced_end(text, start if opener is None else opener.end() - 1)
    scheme = _SCHEME_WORD.match(text, start)
    if scheme is not None:  # "Authorization: Basic dXNlcjpwYXNz"
        return scheme.end()
    bare = _BARE_VALUE.match(text, start)
    return start if bare is None else bare.end()


def _closing(text: str, i: int, delimiter: str) -> int:
    end = text.find(delimiter, i)
    return len(text) if end < 0 else end + 1


def _string_end(text: str, i: int, quote: str) -> int:
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == quote:
            return i + 1
        i += 1
    return n


def _balanced_end(text: str, i: int) -> int:
    """The end of the bracketed term starting at ``i`` (strings skipped); the
    end of the text when it never closes."""
    n = len(text)
    stack: list[str] = []
    while i < n:
        c = text[i]
        if c in "\"'":
            i = _string_end(text, i + 1, c)
            continue
        if c == "\\" and i + 1 < n and text[i + 1] == '"':  # an escaped string
            end = text.find('\\"', i + 2)
            i = n if end < 0 else end + 2
            continue
        if text.startswith("<<", i):
            stack.append(">>")
            i += 2
            continue
        if c in _OPENERS:
            stack.append(_OPENERS[c])
            i += 1
            continue
        if stack and text.startswith(stack[-1], i):
            i += len(stack.pop())
            if not stack:
                return i
            continue
        i += 1
    return n
