"""The one set of rules for reading a term an agent sent.

Every value beamside takes from a node goes through these (the collect
decoder of :mod:`sidecar.model`, the event batches, the attach info, the
control plane's replies), so they all agree:

* :func:`text`: atoms and binaries (UTF-8, bad bytes replaced) and charlists
  as ``str``, bounded (``MAX_TEXT`` characters); pids, ports and references
  as they print; anything else ``""``.
* :func:`number`: an integer or a finite float as ``float``.  A boolean is
  **not** a number (``true`` is an atom in Erlang): None; so is an integer
  too large for a float.
* :func:`flag`: ``true``/``false`` as ``bool``, None for anything else.
* :func:`normalize`: a whole term as plain immutable-by-convention values
  (``str`` keys, tuples for lists), for the sections only the exporter renders.
* :func:`shown`: a term as Python prints it, bounded; never raises (an integer
  of more than 4300 digits is one Python refuses to print).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Final, TypeAlias

from sidecar.erldist.term import Atom, ImproperList, Pid

__all__ = [
    "MAX_TEXT",
    "Value",
    "flag",
    "is_error",
    "key_text",
    "mapping",
    "normalize",
    "number",
    "shown",
    "text",
]

_FLOAT_MAX: Final = sys.float_info.max

#: longest text kept from one value (a printed term, a file name, a reason)
MAX_TEXT: Final = 4096
_MAX_DEPTH: Final = 64

#: a normalized term: what :func:`normalize` returns
Value: TypeAlias = "str | int | float | bool | tuple[Value, ...] | Mapping[str, Value] | None"


def is_error(term: object) -> bool:
    """``{error, _}``: how the agent marks a part it could not compute."""
    return type(term) is tuple and len(term) == 2 and term[0] == "error"


def shown(term: object, limit: int = MAX_TEXT) -> str:
    """``repr(term)``, at most ``limit`` characters; ``<int>`` (its type) for
    a term Python refuses to print: an integer of more than 4300 digits (a
    bignum the node may send), nesting deeper than the recursion limit."""
    try:
        out = repr(term)
    except (ValueError, RecursionError):
        out = f"<{type(term).__name__}>"
    return out if len(out) <= limit else out[:limit]


def key_text(key: object) -> str:
    """A map key as ``str``: atoms as they are, other keys as :func:`text`
    reads them, else printed."""
    if isinstance(key, str):
        return str(key) if len(key) <= MAX_TEXT else key[:MAX_TEXT]
    return text(key) or shown(key)


def text(term: object, limit: int = MAX_TEXT) -> str:
    t = type(term)
    if t is Atom:  # at most 255 characters
        return term  # type: ignore[return-value]
    if isinstance(term, bytes):
        if len(term) <= limit:
            return term.decode("utf-8", "replace")
        out = term[: limit * 4].decode("utf-8", "replace")
    elif isinstance(term, str | Pid):
        out = str(term)
    elif (
        isinstance(term, list)
        and term
        and all(type(c) is int and 0 <= c < 0x110000 for c in term[:limit])
    ):
        out = "".join(chr(c) for c in term[:limit])
    elif term is None or isinstance(term, bool | int | float | list | tuple | dict):
        out = ""
    else:  # ports, references, funs: as they print
        try:
            out = str(term)
        except (ValueError, RecursionError):  # a bignum or deep nesting inside
            out = f"<{type(term).__name__}>"
    return out if len(out) <= limit else out[:limit]


def number(term: object) -> float | None:
    t = type(term)
    if t is int:
        # beyond a float's range (a bignum): not a finite number
        return float(term) if -_FLOAT_MAX <= term <= _FLOAT_MAX else None  # type: ignore[arg-type,operator]
    if t is float:
        return term if term - term == 0.0 else None  # type: ignore[return-value,operator]  # inf, nan
    return None


def flag(term: object) -> bool | None:
    return term if isinstance(term, bool) else None


def mapping(term: object) -> Mapping[str, object] | None:
    """``term`` when it is a map (keys are atoms, hence ``str``), else None."""
    return term if type(term) is dict else None


def normalize(term: object, depth: int = 0) -> Value:
    """``term`` as plain values: atoms and binaries ``str`` (bounded), lists
    and tuples ``tuple``, maps ``dict`` with ``str`` keys (other keys printed),
    numbers and booleans as they are, pids as they print; ``{error, R}``
    stays a 2-tuple ``("error", text)``."""
    t = type(term)
    if t is int or t is float or t is bool or term is None:
        return term  # type: ignore[return-value]
    if t is dict:
        if depth >= _MAX_DEPTH:
            return {}
        return {
            (k if type(k) is str else key_text(k)): normalize(v, depth + 1)
            for k, v in term.items()  # type: ignore[attr-defined]
        }
    if isinstance(term, str):
        return str(term) if len(term) <= MAX_TEXT else term[:MAX_TEXT]
    if t is bytes:
        return text(term)
    if t is list or t is tuple:
        if depth >= _MAX_DEPTH:
            return ()
        if is_error(term):
            return ("error", text(term[1]) or shown(term[1]))  # type: ignore[index]
        return tuple(normalize(v, depth + 1) for v in term)  # type: ignore[attr-defined]
    if isinstance(term, ImproperList):
        return tuple(normalize(v, depth + 1) for v in (*term.elements, term.tail))
    return text(term) or shown(term)
