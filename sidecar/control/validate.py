"""Checks of what clients send, before anything reaches a node.

Each function returns the value in the form the agent takes, or raises
:class:`~sidecar.control.errors.RpcFailure` (``INVALID_ARGUMENT``) with a
message that says which field was wrong and what it should look like.
Texts go to the agent as binaries and are looked up there with
``binary_to_existing_atom``: a look-up never creates an atom on the node.
"""

from __future__ import annotations

import base64
import binascii
import re

from sidecar.erldist.names import parse_node_name

from .errors import RpcFailure, invalid

MAX_ATOM_CHARS = 255
MAX_EXPRESSION_BYTES = 65536
MAX_CONTINUATION_BYTES = 16384
# The text form of a local pid: <0.Number.Serial>, Number < 2^15, Serial < 2^13.
_PID = re.compile(r"^<(\d{1,10})\.(\d{1,10})\.(\d{1,10})>$")
_PLAIN_ATOM = re.compile(r"^[a-z][A-Za-z0-9_@]*$")
_ELIXIR_ALIAS = re.compile(r"^Elixir(\.[A-Z][A-Za-z0-9_]*)+$")
_QUOTED_ATOM = re.compile(r"^'((?:[^'\\\x00-\x1f]|\\.)+)'$")
_TABLE_ID = re.compile(r"^#Ref<0\.\d{1,10}\.\d{1,10}\.\d{1,10}>$")


def node(name: str, field: str = "node") -> str:
    """A node name as the manager knows it (``name@host``)."""
    if not name:
        raise invalid(f"{field} is required (a node name like app@host)")
    try:
        return str(parse_node_name(name))
    except ValueError as exc:
        raise invalid(f"{field}: {exc}") from None


def atom(text: str, field: str) -> str:
    """Atom text: ``plain_atom``, ``Elixir.Module.Name`` or ``'quoted atom'``
    (the quotes taken off)."""
    if not text:
        raise invalid(f"{field} is required (an atom, e.g. my_app)")
    quoted = _QUOTED_ATOM.match(text)
    if quoted is not None:
        value = re.sub(r"\\(.)", r"\1", quoted.group(1))
    elif _PLAIN_ATOM.match(text) or _ELIXIR_ALIAS.match(text):
        value = text
    else:
        raise invalid(
            f"{field}: {_show(text)} is not an atom (lowercase_name, Elixir.Module or 'quoted')"
        )
    if len(value) > MAX_ATOM_CHARS:
        raise invalid(f"{field}: an atom has at most {MAX_ATOM_CHARS} characters")
    return value


def pid_or_name(text: str, field: str = "pid") -> bytes:
    """``<0.123.0>`` or a registered name."""
    if not text:
        raise invalid(f"{field} is required (a pid like <0.123.0> or a registered name)")
    text = text.strip()
    if text.startswith("<"):
        m = _PID.match(text)
        if m is None:
            raise invalid(f"{field}: {_show(text)} is not a pid (write it as <0.123.0>)")
        node_part, number, serial = (int(g) for g in m.groups())
        if node_part != 0:
            raise invalid(
                f"{field}: {text} is a pid of another node as seen from elsewhere; "
                "give the node's own form, <0.N.M>"
            )
        if number >= 1 << 15 or serial >= 1 << 13:
            raise invalid(f"{field}: {text} is out of range (<0.N.M>, N < 32768, M < 8192)")
        return text.encode()
    try:
        return atom(text, field).encode()
    except RpcFailure:
        raise invalid(
            f"{field}: {_show(text)} is neither a pid (<0.123.0>) nor a registered name"
        ) from None


def table(text: str, field: str = "table") -> bytes:
    """A named table's name or a table id ``#Ref<0.N.N.N>``."""
    if not text:
        raise invalid(f"{field} is required (a table name or an id like #Ref<0.1.2.3>)")
    if text.startswith("#"):
        if not _TABLE_ID.match(text):
            raise invalid(f"{field}: {_show(text)} is not a table id (#Ref<0.N.N.N>)")
        return text.encode()
    return atom(text, field).encode()


def limit(value: int, field: str, default: int, maximum: int, minimum: int = 1) -> int:
    """0 means the default; otherwise within [minimum, maximum]."""
    if value == 0:
        return default
    if not minimum <= value <= maximum:
        raise invalid(f"{field} must be from {minimum} to {maximum} (got {value})")
    return value


def choice(value: str, field: str, allowed: tuple[str, ...]) -> str:
    """One of ``allowed``; empty means the first."""
    if not value:
        return allowed[0]
    if value not in allowed:
        raise invalid(f"{field} must be one of {', '.join(allowed)} (got {_show(value)})")
    return value


def expression(text: str, field: str = "expression") -> bytes:
    if not text.strip():
        raise invalid(f"{field} is empty")
    data = text.encode()
    if len(data) > MAX_EXPRESSION_BYTES:
        raise invalid(f"{field} is longer than {MAX_EXPRESSION_BYTES} bytes")
    if "\x00" in text:
        raise invalid(f"{field} contains a NUL character")
    return data


def continuation_decode(text: str) -> bytes | None:
    if not text:
        return None
    if len(text) > MAX_CONTINUATION_BYTES * 2:
        raise invalid("continuation is too long: pass back the one ReadTable returned")
    try:
        return base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise invalid("continuation is not one ReadTable returned (bad base64)") from None


def continuation_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _show(text: str) -> str:
    """A client string quoted for an error message (short)."""
    return repr(text if len(text) <= 60 else text[:57] + "...")
